// Benchmark of the estimator engine.
//
//   npm run bench:estimator              (node --import tsx bench/estimator.ts [--reps R] [--only shapes|sweep|kernels])
//
// Parts: `shapes` (fixed shapes against JS and NumPy), `sweep` (bench/sweep.ts: real MNIST and
// d = 64 Gaussian data across sigma 0.002..80, scorefield vs its full scan vs NumPy, call by
// call; B = 1 latency), `kernels` (Poisson and radial kernels against the Gaussian).
//
// Prints one JSON object per line on stdout. GFLOP/s count 4 B N d (two GEMM-shaped
// passes); the FP32 FMA peak is measured in the same run with a native loop of independent
// FMAs on every pool thread; `vsJs` is the speed-up over a straightforward JavaScript
// implementation timed on a few queries of the same shape, `vsNumpy` over NumPy (B x N
// matrix, BLAS sgemm) when python3 with NumPy is present.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { capabilities, poisson, radial, ReferenceSet, setThreads, type Kernel } from '../lib/index';
import { native } from '../lib/native';
import { mnistLike, noisyQueries, toy2d } from '../test/helpers/estimator-ref';
import { rand } from '../test/helpers/reference';
import { sweep } from './sweep';
import { emit, median, numFlag } from './util';

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const part = (name: string) => only === undefined || only === name;

/** The straightforward JS estimator of one query: logits, max, exp, weighted sum. */
function jsEstimate(Y: Float32Array, d: number, x: Float32Array, sigma: number, out: Float64Array): void {
  const N = Y.length / d;
  const l = new Float64Array(N);
  let mx = -Infinity;
  for (let j = 0; j < N; j++) {
    let r2 = 0;
    for (let k = 0; k < d; k++) {
      const t = x[k] - Y[j * d + k];
      r2 += t * t;
    }
    l[j] = -r2 / (2 * sigma * sigma);
    if (l[j] > mx) mx = l[j];
  }
  out.fill(0);
  let s = 0;
  for (let j = 0; j < N; j++) {
    const w = Math.exp(l[j] - mx);
    s += w;
    for (let k = 0; k < d; k++) out[k] += w * Y[j * d + k];
  }
  for (let k = 0; k < d; k++) out[k] /= s;
}

function numpy(d: number, N: number, B: number, sigma: number): number | undefined {
  try {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE; // see the env skill: both unset together, in this command alone
    delete env.OPENBLAS_L2_SIZE;
    const out = execFileSync('python3', [path.join(__dirname, 'numpy_estimator.py'), String(d), String(N), String(B), String(sigma), '5'], {
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 120000,
    });
    return JSON.parse(out.toString()).seconds as number;
  } catch {
    return undefined;
  }
}

function timeIt(fn: () => unknown, reps: number): number {
  fn();
  const s: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    s.push((performance.now() - t0) / 1000);
  }
  return median(s);
}

async function main(): Promise<void> {
  const reps = numFlag('reps', 5);
  setThreads(numFlag('threads', capabilities().hardwareThreads));
  const caps = capabilities();
  const lanes = caps.simd === 'avx512' ? 16 : caps.simd === 'avx2' ? 8 : caps.simd === 'neon' ? 4 : 1;
  // The machine is shared: peak and exp rate are measured right next to every timed run
  // (alternating), and each shape reports the median of the per-run ratios.
  const iters = 1e7;
  const peakNow = () => (caps.threads * iters * 12 * lanes * 2) / native().probe(0, iters) / 1e9;
  const expIters = 1000;
  const expNow = () => (caps.threads * expIters * 4096) / native().probe(1, expIters);
  const peak = median([0, 1, 2, 3, 4].map(peakNow));
  const expRate = median([0, 1, 2, 3, 4].map(expNow));
  emit({ bench: 'env', simd: caps.simd, threads: caps.threads, node: process.version, peakGflops: peak, expPerSecond: expRate });
  if (part('sweep')) await sweep({ reps, peakNow });
  if (!part('shapes')) return;

  /** Median seconds of fn and the median ratio of its rate to the probe's, alternating. */
  const timeAgainst = (fn: () => unknown, probe: () => number, work: number): { secs: number; ratio: number; probe: number } => {
    fn();
    const secs: number[] = [];
    const ratios: number[] = [];
    const probes: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn();
      const s = (performance.now() - t0) / 1000;
      const p = probe();
      secs.push(s);
      probes.push(p);
      ratios.push(work / s / p);
    }
    return { secs: median(secs), ratio: median(ratios), probe: median(probes) };
  };

  const shapes: Array<{ name: string; d: number; N: number; B: number; sigma: number; data: () => Float32Array }> = [
    { name: 'd2', d: 2, N: 10000, B: 1000, sigma: 0.1, data: () => toy2d(10000, 1) },
    { name: 'd64', d: 64, N: 50000, B: 256, sigma: 1, data: () => rand(50000 * 64, 2, -1, 1) },
    { name: 'd784', d: 784, N: 10000, B: 256, sigma: 1, data: () => mnistLike(10000, 3) },
    { name: 'd3072', d: 3072, N: 10000, B: 64, sigma: 1, data: () => rand(10000 * 3072, 4, -1, 1) },
    { name: 'single-query', d: 784, N: 60000, B: 1, sigma: 1, data: () => rand(60000 * 784, 5, -1, 1) },
  ];
  for (const s of shapes) {
    const Y = s.data();
    const ref = new ReferenceSet(Y, s.d);
    const x = noisyQueries(Y, s.d, s.B, 1, s.sigma, 9);
    const mean = new Float32Array(s.B * s.d);
    let refined = 0;
    const flops = 4 * s.B * s.N * s.d;
    const run = () => {
      refined = ref.estimateWithStats(x, { sigma: s.sigma, outputs: ['mean'], out: { mean } }).refined;
    };
    const t = s.d === 2 ? timeAgainst(run, expNow, s.B * s.N) : timeAgainst(run, peakNow, flops / 1e9);
    const secs = t.secs;
    const gflops = flops / secs / 1e9;
    // JS: a few queries, scaled to the batch.
    const jsQ = Math.min(s.B, s.d >= 784 ? 2 : 4);
    const tmp = new Float64Array(s.d);
    const jsSecs = (timeIt(() => {
      for (let i = 0; i < jsQ; i++) jsEstimate(Y, s.d, x.subarray(i * s.d, (i + 1) * s.d), s.sigma, tmp);
    }, 3) * s.B) / jsQ;
    const np = s.B > 1 ? numpy(s.d, s.N, s.B, s.sigma) : undefined;
    const rec: Record<string, unknown> = {
      bench: `estimate-${s.name}`,
      d: s.d,
      N: s.N,
      B: s.B,
      sigma: s.sigma,
      seconds: secs,
      gflops,
      ofPeak: s.d === 2 ? gflops / peak : t.ratio,
      refinedPairs: refined / (s.B * s.N),
      vsJs: jsSecs / secs,
      workingMemoryMB: ref.workingMemory(s.B, ['mean']) / 2 ** 20,
      setMB: ref.byteLength / 2 ** 20,
    };
    if (np !== undefined) rec.vsNumpy = np / secs;
    if (s.d === 2) {
      // Bound: one exp per query-reference pair.
      rec.pairsPerSecond = (s.B * s.N) / secs;
      rec.ofExpBound = t.ratio;
      rec.expPerSecond = t.probe;
    }
    if (s.B === 1) rec.streamGBps = ref.byteLength / secs / 1e9;
    emit(rec);
  }

  // Cost against sigma on MNIST-like data: the precise recomputation runs where needed.
  const Y = mnistLike(10000, 3);
  const ref = new ReferenceSet(Y, 784);
  for (const sigma of [0.002, 0.05, 0.3, 1, 3, 80]) {
    const x = noisyQueries(Y, 784, 256, 1, sigma, 11);
    let refined = 0;
    const flops = 4 * 256 * 10000 * 784;
    const t = timeAgainst(() => {
      refined = ref.estimateWithStats(x, { sigma, outputs: ['mean', 'score'] }).refined;
    }, peakNow, flops / 1e9);
    emit({ bench: 'estimate-d784-sigma', sigma, seconds: t.secs, gflops: flops / t.secs / 1e9, ofPeak: t.ratio, refinedPairs: refined / (256 * 10000) });
  }
}

main()
  .then(() => (part('kernels') ? kernelCosts() : undefined))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });

/**
 * Cost of the Poisson and radial kernels against the Gaussian at d >= 256 (same data, queries
 * and sigma; time ratio, median of alternating runs). Target: within 1.5x.
 */
async function kernelCosts(): Promise<void> {
  for (const [d, N, gen] of [
    [256, 20000, () => rand(20000 * 256, 1, -1, 1)],
    [784, 10000, () => mnistLike(10000, 3)],
  ] as const) {
    const Y = gen();
    const ref = new ReferenceSet(Y, d);
    const x = noisyQueries(Y, d, 256, 1, 1, 5);
    const time = (kernel: Kernel | undefined) => {
      const t0 = performance.now();
      ref.estimate(x, { sigma: 1, kernel, outputs: ['mean'] });
      return (performance.now() - t0) / 1000;
    };
    for (const [name, kernel] of [['poisson-D1', poisson()], ['poisson-D128', poisson({ D: 128 })], ['radial-tanh', radial('tanh')], ['radial-exp', radial('exp')]] as const) {
      time(kernel);
      const ratios: number[] = [];
      for (let r = 0; r < 5; r++) {
        const g = time(undefined);
        ratios.push(time(kernel) / g);
      }
      emit({ bench: `kernel-cost-${name}`, d, N, B: 256, sigma: 1, vsGaussian: median(ratios) });
    }
  }
}
