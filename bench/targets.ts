// Microbenchmark of the elementwise score-target kernels.
//
//   npm run bench                         (node --import tsx bench/targets.ts)
//   npm run bench -- --size 8000000 --reps 9
//
// Prints one JSON object per line on stdout. Bandwidth counts the bytes the kernel must move
// (STREAM convention: reads + writes, no write-allocate traffic). The machine's streaming
// bandwidth is measured in the same run with a STREAM triad (a = b + s*c) compiled for the
// baseline instruction set and run on the same thread pool; the JavaScript baseline is a plain
// Float32Array loop.
import { capabilities, conditionalScore, convert, dsmLoss, perturb, perturbAsync, randn, setThreads, velocityTarget } from '../lib/index';
import { native } from '../lib/native';
import { emit, filled, timePair, timeSync, timeAsync, numFlag } from './util';

async function main(): Promise<void> {
  const n = numFlag('size', 16 * 1024 * 1024); // 64 MiB per array: far beyond any cache
  const reps = numFlag('reps', 7);
  const threads = numFlag('threads', capabilities().hardwareThreads);
  setThreads(threads);
  const caps = capabilities();
  emit({ bench: 'env', simd: caps.simd, threads: caps.threads, node: process.version, elements: n, reps });

  const a = filled(n, 1);
  const b = filled(n, 2);
  const out = new Float32Array(n).fill(0);
  const B = 4096;
  const perSigma = new Float32Array(B).fill(0.5);
  const perAlpha = new Float32Array(B).fill(0.9);
  const GB = 1e9;

  const runTriad = () => native().streamTriad(out, a, b, 0.5, false);
  const triad = timeSync(runTriad, reps);
  const stream = (12 * n) / triad / GB;
  emit({ bench: 'stream-triad', gbps: stream, seconds: triad });

  const jsLoop = timeSync(() => {
    for (let i = 0; i < n; i++) out[i] = 0.9 * a[i] + 0.5 * b[i];
  }, reps);
  emit({ bench: 'js-loop-perturb', gbps: (12 * n) / jsLoop / GB, seconds: jsLoop, ofStream: (12 * n) / jsLoop / GB / stream });

  const cases: Array<[string, number, () => unknown]> = [
    ['perturb', 12, () => perturb(a, b, 0.9, 0.5, out)],
    ['perturb-per-sample', 12, () => perturb(a, b, perAlpha, perSigma, out)],
    ['conditionalScore', 12, () => conditionalScore(a, b, 0.9, 0.5, out)],
    ['convert-eps-to-x0-per-sample', 12, () => convert('eps', 'x0', a, b, perAlpha, perSigma, out)],
    ['velocityTarget', 12, () => velocityTarget(a, b, -1, 1, out)],
    ['dsmLoss+grad', 12, () => dsmLoss(a, b, { dim: n / B, gradOut: out })],
    ['dsmLoss', 8, () => dsmLoss(a, b, { dim: n / B, grad: false })],
  ];
  // Each kernel alternates with the triad, and its share of streaming bandwidth is taken
  // against the triad measured alongside it.
  for (const [name, bytes, fn] of cases) {
    const [s, tr] = timePair(fn, runTriad, reps);
    const gbps = (bytes * n) / s / GB;
    emit({ bench: name, gbps, seconds: s, ofStream: gbps / ((12 * n) / tr / GB), vsJs: jsLoop / s });
  }
  const asyncS = await timeAsync(() => perturbAsync(a, b, 0.9, 0.5, out), reps);
  emit({ bench: 'perturbAsync', gbps: (12 * n) / asyncS / GB, seconds: asyncS, ofStream: (12 * n) / asyncS / GB / stream });

  const rn = Math.min(n, 4 * 1024 * 1024);
  const rs = timeSync(() => randn(out.subarray(0, rn), { seed: 1, dim: 1024 }), reps);
  emit({ bench: 'randn', msamplesPerSecond: rn / rs / 1e6, seconds: rs });

  // Call overhead on tiny arrays: the whole public call (validation + Node-API + kernel).
  const tiny = 16;
  const ta = filled(tiny, 3);
  const tb = filled(tiny, 4);
  const to = new Float32Array(tiny);
  const inner = 200000;
  const tinyPublic = timeSync(() => perturb(ta, tb, 0.9, 0.5, to), reps, inner);
  const tinyRaw = timeSync(() => native().perturb(to, ta, tb, 1, tiny, 0.9, 0.5, false), reps, inner);
  const tinyJs = timeSync(() => {
    for (let i = 0; i < tiny; i++) to[i] = 0.9 * ta[i] + 0.5 * tb[i];
  }, reps, inner);
  emit({ bench: 'tiny-call-overhead', elements: tiny, publicMicros: tinyPublic * 1e6, bindingMicros: tinyRaw * 1e6, jsLoopMicros: tinyJs * 1e6 });
  const tinyAlpha = Float32Array.of(0.9, 0.8);
  const tinySigma = Float32Array.of(0.5, 0.4);
  const tinyPer = timeSync(() => perturb(ta, tb, tinyAlpha, tinySigma, to), reps, inner);
  emit({ bench: 'tiny-call-overhead-per-sample', elements: tiny, publicMicros: tinyPer * 1e6 });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
