// Benchmark of the samplers.
//
//   npm run bench:sampler        (node --import tsx bench/sampler.ts [--reps R])
//
// The full EDM Heun sampler (18 steps, 35 evaluations) with a ReferenceSet as the denoiser,
// run natively by ReferenceSet.sample: seconds, and the share of the time spent outside the
// estimator (target: under 3%), measured by the native loop itself. Then the step kernels
// alone in GB/s against a STREAM triad timed in alternation (memory-bound, target 70%).
// Then the event loop's responsiveness while a ~2-second sampling job runs asynchronously
// (perf_hooks.monitorEventLoopDelay, 1 ms resolution; target: p99 under 10 ms), for the
// native loop and for the JS-driven sampleHeun over estimateAsync.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { capabilities, eulerStep, heunStep, ReferenceSet, sampleHeun, schedules, randn } from '../lib/index';
import { native } from '../lib/native';
import { mnistLike } from '../test/helpers/estimator-ref';
import { rand } from '../test/helpers/reference';
import { emit, filled, median, timePair, numFlag } from './util';

async function main(): Promise<void> {
  const reps = numFlag('reps', 3);
  const caps = capabilities();
  emit({ bench: 'env', simd: caps.simd, threads: caps.threads, node: process.version });
  const sigmas = schedules.karrasSigmas(18);
  for (const [name, N, d, data] of [
    ['heun18-mnist-like', 10000, 784, () => mnistLike(10000, 3)],
    ['heun18-d64', 50000, 64, () => rand(50000 * 64, 2, -1, 1)],
  ] as const) {
    const ref = new ReferenceSet(data(), d);
    const runs = [];
    for (let r = 0; r < reps; r++) runs.push(await ref.sample({ sigmas, solver: 'heun', batch: 256, seed: r }));
    const secs = median(runs.map((s) => s.seconds));
    const outside = median(runs.map((s) => 1 - s.estimatorSeconds / s.seconds));
    emit({ bench: name, N, d, batch: 256, steps: 18, nfe: runs[0].nfe, seconds: secs, shareOutsideEstimator: outside });
  }

  const n = 16 * 1024 * 1024;
  const a = filled(n, 1);
  const b = filled(n, 2);
  const c = filled(n, 3);
  const e = filled(n, 4);
  const out = new Float32Array(n);
  const triad = () => native().streamTriad(out, a, b, 0.5, false);
  const B = 4096;
  const s = new Float32Array(B).fill(1.5);
  const sn = new Float32Array(B).fill(1.2);
  for (const [name, bytes, fn] of [
    ['eulerStep', 12, () => eulerStep(a, b, s, sn, { out })],
    ['heunStep', 20, () => heunStep(a, b, c, e, s, sn, { out })],
  ] as const) {
    const [t, tr] = timePair(fn, triad, 7);
    const gbps = (bytes * n) / t / 1e9;
    emit({ bench: `step-${name}`, gbps, ofStream: gbps / ((12 * n) / tr / 1e9), seconds: t });
  }
}

async function eventLoop(): Promise<void> {
  const ref = new ReferenceSet(mnistLike(10000, 3), 784);
  const sigmas = schedules.karrasSigmas(18);
  for (const mode of ['native ReferenceSet.sample', 'sampleHeun over estimateAsync'] as const) {
    const h = monitorEventLoopDelay({ resolution: 1 });
    let ticks = 0;
    const busy = setInterval(() => ticks++, 1);
    h.enable();
    const t0 = performance.now();
    if (mode === 'native ReferenceSet.sample') {
      await ref.sample({ sigmas, batch: 256, seed: 1, onProgress: () => {} });
    } else {
      const x = randn(256 * 784, { seed: 1, dim: 784 }).map((v) => v * 80);
      await sampleHeun(async (xs, sigma) => (await ref.estimateAsync(xs, { sigma, outputs: ['mean'] })).mean, x, sigmas, { dim: 784 });
    }
    const seconds = (performance.now() - t0) / 1000;
    h.disable();
    clearInterval(busy);
    emit({
      bench: 'event-loop-delay',
      job: mode,
      seconds,
      p50ms: h.percentile(50) / 1e6,
      p99ms: h.percentile(99) / 1e6,
      maxMs: h.max / 1e6,
      intervalTicks: ticks,
    });
  }
}

main().then(eventLoop).catch((err) => {
  console.error(err);
  process.exit(1);
});
