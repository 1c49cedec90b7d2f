// Exact pruning (issue 12, docs/numerics.md): the pruned pass must agree with float64 and with
// the full scan within the estimator's tolerance, at every sigma, for every kernel, on real
// MNIST digits (held-out, training and jittered queries), a clustered set and a set far from
// the origin; it must not depend on the thread count; pruned shards must merge exactly; and
// it must actually prune (the share of pairs never computed is checked, so the test exercises
// the pruned path and fails if pruning silently switched itself off).
import test from 'ava';
import {
  capabilities,
  datasets,
  gaussian,
  poisson,
  radial,
  randn,
  ReferenceSet,
  setPruning,
  setThreads,
  type Kernel,
} from '../lib/index';
import { noised, posteriorMoments, refLogWeights, relErr } from './helpers/estimator-ref';

type KernelName = 'gaussian' | 'poisson' | 'tanh' | 'exp';

/** Float64 direct differences for every kernel: mean, ESS and trace of the covariance. */
function reference(Y: Float32Array, d: number, x: Float32Array, sigma: number, kind: KernelName) {
  const { l, mx } = refLogWeights(Y, d, x, kernelOf(kind) ?? gaussian(), sigma);
  const m = posteriorMoments(Y, d, l, mx);
  return { mean: m.mean, ess: m.ess, traceCov: m.traceCov };
}

function kernelOf(kind: KernelName): Kernel | undefined {
  return kind === 'gaussian' ? undefined : kind === 'poisson' ? poisson({ D: 1 }) : radial(kind);
}

const noisy = noised;

const d = 784;
const mnist = datasets.mnist({ limit: 2600 });
const N = 2400;
const train = mnist.data.slice(0, N * d);
const held = mnist.data.slice(N * d, (N + 8) * d);
const ref = new ReferenceSet(train, d);

/**
 * `clusters` tight clusters in `dim` dimensions, shifted by offset; row i belongs to cluster
 * i % clusters and has spread 0.05, 0.1 or 0.15 per coordinate (by its rank in the cluster),
 * so a query at a cluster's mean sees a posterior with a tail over many nats.
 */
function clustered(n: number, dim: number, offset: number, seed: number, clusters = 8): Float32Array {
  const centres = randn(clusters * dim, { seed });
  const z = randn(n * dim, { seed: seed + 1 });
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const spread = 0.05 * (1 + (Math.floor(i / clusters) % 3));
    for (let k = 0; k < dim; k++) out[i * dim + k] = offset + 3 * centres[(i % clusters) * dim + k] + spread * z[i * dim + k];
  }
  return out;
}

const SIGMAS = [0.002, 0.01, 0.05, 0.2, 0.5, 1, 5, 80];

function checkAgainstFloat64(
  t: import('ava').ExecutionContext,
  set: ReferenceSet,
  Y: Float32Array,
  dim: number,
  x: Float32Array,
  sigma: number,
  kind: KernelName,
  label: string,
): void {
  const B = x.length / dim;
  // the documented floor of traceCov (README, Precision): about 1e-7 max ||y - centre||^2
  const mu = new Float64Array(dim);
  for (let j = 0; j < Y.length / dim; j++) for (let k = 0; k < dim; k++) mu[k] += Y[j * dim + k] / (Y.length / dim);
  let maxYY = 0;
  for (let j = 0; j < Y.length / dim; j++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += (Y[j * dim + k] - mu[k]) ** 2;
    maxYY = Math.max(maxYY, s);
  }
  const r = set.estimate(x, { sigma, kernel: kernelOf(kind), outputs: ['mean', 'ess', 'traceCov'] });
  for (let i = 0; i < B; i++) {
    const w = reference(Y, dim, x.subarray(i * dim, (i + 1) * dim), sigma, kind);
    const e = relErr(r.mean, w.mean, i * dim);
    t.true(e < 1e-4, `${label} ${kind} sigma=${sigma} query ${i}: mean relative error ${e}`);
    t.true(Math.abs(r.ess[i] - w.ess) <= 1e-4 * w.ess, `${label} ${kind} sigma=${sigma} query ${i}: ess ${r.ess[i]} vs ${w.ess}`);
    t.true(Math.abs(r.traceCov[i] - w.traceCov) <= 1e-4 * w.traceCov + 1e-7 * maxYY,
      `${label} ${kind} sigma=${sigma} query ${i}: traceCov ${r.traceCov[i]} vs ${w.traceCov}`);
  }
}

test.serial('real MNIST with pruning: every kernel within 1e-4 of float64 at every sigma (held-out, training, jittered)', (t) => {
  for (const kind of ['gaussian', 'poisson', 'tanh', 'exp'] as KernelName[]) {
    for (const sigma of kind === 'gaussian' ? SIGMAS : [0.01, 0.2, 5]) {
      checkAgainstFloat64(t, ref, train, d, noisy(held.subarray(0, 3 * d), sigma, 1), sigma, kind, 'held-out');
      checkAgainstFloat64(t, ref, train, d, noisy(train.subarray(0, 3 * d), sigma, 2), sigma, kind, 'training');
      checkAgainstFloat64(t, ref, train, d, noisy(train.subarray(5 * d, 8 * d), sigma, 3, 1e-3), sigma, kind, 'jittered');
    }
  }
});

test.serial('training digits whose own rows lie anywhere in the set: finished by the pruned pass, within 1e-4 of float64', (t) => {
  // 40 digits from every tile of the 2,400 rows (a block of 32 in the lanes layout and 8 in the
  // rows layout): the pilot must find each one's own row wherever it lies, and the scan must
  // not skip the tile holding it
  const B = 40;
  const base = new Float32Array(B * d);
  for (let i = 0; i < B; i++) {
    const r = Math.floor((i * N) / B) + 7;
    base.set(train.subarray(r * d, (r + 1) * d), i * d);
  }
  for (const sigma of [0.002, 0.05]) {
    const x = noisy(base, sigma, 31);
    const st = ref.estimateWithStats(x, { sigma, outputs: ['mean'] });
    t.is(st.sparseQueries, B, `sigma ${sigma}: every query finished by the pruned pass`);
    t.true(st.exactPairs < (B * N) / 20, `sigma ${sigma}: ${st.exactPairs} exact pairs`);
    checkAgainstFloat64(t, ref, train, d, x, sigma, 'gaussian', 'spread training');
  }
});

test.serial('held-out digits filling a lanes block: bounded in wide tiles, finished by the pruned pass, within 1e-4 of float64', (t) => {
  // 40 held-out digits: a block of 32 in the lanes layout (two of 16 with AVX2) and 8 in the
  // rows layout. The first level leaves each lanes block too many pairs to refine one by one,
  // so its tiles are bounded with the full projection (wideTiles); the result must still be
  // exact to the tolerance, and the training digits of the other test never go wide.
  const B = 40;
  const x0 = mnist.data.slice(N * d, (N + B) * d);
  for (const sigma of [0.002, 0.05, 0.2]) {
    const x = noisy(x0, sigma, 41);
    const st = ref.estimateWithStats(x, { sigma, outputs: ['mean'] });
    t.true(st.wideTiles > 0, `sigma ${sigma}: ${st.wideTiles} wide tiles`);
    t.true(st.sparseQueries >= B - 2, `sigma ${sigma}: ${st.sparseQueries} of ${B} finished by the pruned pass`);
    checkAgainstFloat64(t, ref, train, d, x, sigma, 'gaussian', 'held-out block');
  }
  const spread = new Float32Array(B * d);
  for (let i = 0; i < B; i++) {
    const r = Math.floor((i * N) / B) + 7;
    spread.set(train.subarray(r * d, (r + 1) * d), i * d);
  }
  const st = ref.estimateWithStats(noisy(spread, 0.01, 42), { sigma: 0.01, outputs: ['mean'] });
  t.is(st.wideTiles, 0, 'training digits at sigma 0.01: their own rows are all the first level leaves');
});

test.serial('small batches of held-out digits (the rows layout, first level four queries a pass): finished by the pruned pass, within 1e-4 of float64', (t) => {
  // 5, 6 and 7 queries: a group of four and a remainder of 1, 2 or 3 in bounds_cols
  for (const B of [5, 6, 7]) {
    const x0 = mnist.data.slice(N * d, (N + B) * d);
    for (const sigma of [0.002, 0.05, 0.2]) {
      const x = noisy(x0, sigma, 50 + B);
      const st = ref.estimateWithStats(x, { sigma, outputs: ['mean'] });
      t.true(st.sparseQueries >= B - 1, `B ${B} sigma ${sigma}: ${st.sparseQueries} of ${B} finished by the pruned pass`);
      t.true(st.prunedShare > 0.5, `B ${B} sigma ${sigma}: pruned share ${st.prunedShare}`);
      checkAgainstFloat64(t, ref, train, d, x, sigma, 'gaussian', `held-out B=${B}`);
    }
  }
});

test.serial('clustered and far-from-origin sets (d = 32) with pruning: within 1e-4 of float64', (t) => {
  for (const offset of [0, 1000]) {
    const Y = clustered(3000, 32, offset, 11);
    const set = new ReferenceSet(Y, 32);
    for (const sigma of [0.002, 0.02, 0.2, 2, 20]) {
      for (const kind of ['gaussian', 'poisson'] as KernelName[]) {
        checkAgainstFloat64(t, set, Y, 32, noisy(Y.subarray(0, 4 * 32), sigma, 5), sigma, kind, `offset ${offset}`);
      }
    }
  }
});

test.serial('posteriors spread over many references (100 clusters of 30): the pruned pass keeps every pair that matters', (t) => {
  // sigma near the clusters' spread: each posterior covers much of one cluster (ESS > 2) with a
  // tail over several nats, while the other 99 clusters are pruned; a window that dropped pairs within log(N e / tol) of
  // the top would fail the 1e-4 comparison here.
  // d = 32 has one level of bounds (k = 8); d = 160 two (k = 40, then k1 = 10 first), sigma
  // scaled with sqrt(d) so the posteriors keep their shape
  for (const [dim, offsets] of [[32, [0, 1000]], [160, [0]]] as const) {
    for (const offset of offsets) {
      const Y = clustered(3000, dim, offset, 21, 100);
      const set = new ReferenceSet(Y, dim);
      for (const s of [0.1, 0.2, 0.3]) {
        const sigma = s * Math.sqrt(dim / 32);
        // queries near the clusters' means
        const means = new Float32Array(6 * dim);
        for (let c = 0; c < 6; c++) for (let m = 0; m < 30; m++) for (let k = 0; k < dim; k++) means[c * dim + k] += Y[(c + 100 * m) * dim + k] / 30;
        const x = noisy(means, 0.02, 22);
        const st = set.estimateWithStats(x, { sigma, outputs: ['ess'] });
        const at = `d ${dim} offset ${offset} sigma ${sigma}`;
        t.is(st.sparseQueries, 6, `${at}: pruned pass used`);
        t.true(Math.max(...st.result.ess) > 2, `${at}: spread posterior (ess ${Math.max(...st.result.ess)})`);
        for (const kind of ['gaussian', 'poisson', 'tanh', 'exp'] as KernelName[]) checkAgainstFloat64(t, set, Y, dim, x, sigma, kind, `100 clusters, ${at}`);
      }
    }
  }
});

test.serial('pruning prunes at small sigma, turns itself off at large sigma, and agrees with the full scan', (t) => {
  const B = 64;
  const x0 = train.subarray(0, B * d);
  for (const sigma of [0.002, 0.05, 0.5, 5, 80]) {
    const x = noisy(x0, sigma, 9);
    setPruning(false);
    const full = ref.estimateWithStats(x, { sigma, outputs: ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] });
    setPruning(true);
    const pr = ref.estimateWithStats(x, { sigma, outputs: ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] });
    t.is(full.prunedShare, 0);
    if (sigma <= 0.05) t.true(pr.prunedShare > 0.95, `sigma ${sigma}: pruned share ${pr.prunedShare}`);
    if (sigma >= 5) t.is(pr.sparseQueries, 0, `sigma ${sigma}: pruning switched off`);
    // the working memory is reported whichever pass finished the queries (all pruned, or not)
    const all = ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] as const;
    t.is(pr.scratchBytes, ref.workingMemory(B, all), `sigma ${sigma}: scratchBytes`);
    t.true(full.scratchBytes > 0 && full.scratchBytes < pr.scratchBytes, `sigma ${sigma}: the full scan's alone`);
    for (let i = 0; i < B; i++) {
      t.true(relErr(pr.result.mean, Array.from(full.result.mean.subarray(i * d, (i + 1) * d)), i * d) < 1e-5, `mean ${sigma} ${i}`);
      t.true(relErr(pr.result.score, Array.from(full.result.score.subarray(i * d, (i + 1) * d)), i * d) < 1e-4, `score ${sigma} ${i}`);
      t.true(Math.abs(pr.result.logDensity[i] - full.result.logDensity[i]) <= 1e-4 * Math.max(1, Math.abs(full.result.logDensity[i])));
      t.true(Math.abs(pr.result.ess[i] - full.result.ess[i]) <= 1e-4 * full.result.ess[i]);
    }
  }
});

test.serial('a batch mixing pruned and full-scan queries (per-sample sigma and alpha) matches per-query calls', (t) => {
  const B = 40;
  const sig = new Float32Array(B);
  const al = new Float32Array(B);
  for (let i = 0; i < B; i++) {
    sig[i] = [0.002, 0.05, 0.5, 3, 40][i % 5];
    al[i] = 0.5 + (i % 3) * 0.25;
  }
  const x = new Float32Array(B * d);
  const eps = randn(B * d, { seed: 4 });
  for (let i = 0; i < B; i++) for (let k = 0; k < d; k++) x[i * d + k] = al[i] * train[(i * 7) * d + k] + sig[i] * eps[i * d + k];
  const r = ref.estimateWithStats(x, { sigma: sig, alpha: al, outputs: ['mean', 'ess'] });
  t.true(r.sparseQueries > 0 && r.sparseQueries < B, `sparse ${r.sparseQueries}`);
  for (let i = 0; i < B; i++) {
    const one = ref.estimate(x.subarray(i * d, (i + 1) * d), { sigma: sig[i], alpha: al[i], outputs: ['mean', 'ess'] });
    t.true(relErr(r.result.mean, Array.from(one.mean), i * d) < 1e-5, `query ${i}`);
    t.true(Math.abs(r.result.ess[i] - one.ess[0]) <= 1e-4 * one.ess[0]);
  }
});

test.serial('pruned results do not depend on the thread count', (t) => {
  const x = noisy(held, 0.05, 12);
  const x2 = noisy(train.subarray(0, 40 * d), 0.3, 13);
  const runs: Float32Array[][] = [];
  for (const threads of [1, 2, 3]) {
    setThreads(threads);
    runs.push([
      ref.estimate(x, { sigma: 0.05, outputs: ['mean'] }).mean,
      ref.estimate(x2, { sigma: 0.3, outputs: ['mean'] }).mean,
      ref.estimate(x.subarray(0, d), { sigma: 0.05, outputs: ['mean'] }).mean,
    ]);
  }
  setThreads(capabilities().hardwareThreads);
  for (const r of runs.slice(1)) {
    for (let c = 0; c < r.length; c++) t.deepEqual(Buffer.from(r[c].buffer), Buffer.from(runs[0][c].buffer));
  }
});

test.serial('partial states of pruned shards merge to the whole-set result', (t) => {
  const x = noisy(held, 0.02, 14);
  const whole = ref.estimate(x, { sigma: 0.02, outputs: ['mean', 'logDensity', 'ess'] });
  const cuts = [0, 1100, N];  // both shards have an index's worth of rows, so both are pruned
  const parts = [];
  for (let i = 0; i + 1 < cuts.length; i++) parts.push(ref.estimatePartial(x, { sigma: 0.02, start: cuts[i], end: cuts[i + 1] }));
  const fin = ReferenceSet.finalizePartial(ReferenceSet.mergePartials(parts.reverse()), x, { sigma: 0.02, outputs: ['mean', 'logDensity', 'ess'] });
  for (let i = 0; i < 8; i++) {
    t.true(relErr(fin.mean, Array.from(whole.mean.subarray(i * d, (i + 1) * d)), i * d) < 1e-6);
    t.true(Math.abs(fin.logDensity[i] - whole.logDensity[i]) <= 1e-5 * Math.abs(whole.logDensity[i]));
    t.true(Math.abs(fin.ess[i] - whole.ess[i]) <= 1e-4 * whole.ess[i]);
  }
  // a set split into two sets (each with its own index) merges to the same
  const a = new ReferenceSet(train.subarray(0, 1200 * d), d).estimatePartial(x, { sigma: 0.02 });
  const b = new ReferenceSet(train.subarray(1200 * d), d).estimatePartial(x, { sigma: 0.02 });
  const fin2 = ReferenceSet.finalizePartial(ReferenceSet.mergePartials([a, b]), x, { sigma: 0.02, outputs: ['mean'] });
  for (let i = 0; i < 8; i++) t.true(relErr(fin2.mean, Array.from(whole.mean.subarray(i * d, (i + 1) * d)), i * d) < 1e-6);
});

test.serial('row order is the caller\'s: rows() returns the rows given, and the native sampler agrees with and without pruning', async (t) => {
  const idx = [0, 5, 2399, 17];
  const got = ref.rows(idx);
  for (let i = 0; i < idx.length; i++) t.deepEqual(Array.from(got.subarray(i * d, (i + 1) * d)), Array.from(train.subarray(idx[i] * d, (idx[i] + 1) * d)));
  const sigmas = [80, 20, 5, 1, 0.3, 0.05, 0.01, 0.002, 0];
  setPruning(false);
  const a = await ref.sample({ batch: 6, seed: 2, sigmas });
  setPruning(true);
  const b = await ref.sample({ batch: 6, seed: 2, sigmas });
  let worst = 0;
  for (let i = 0; i < a.x.length; i++) worst = Math.max(worst, Math.abs(a.x[i] - b.x[i]));
  t.true(worst < 1e-3, `largest difference ${worst}`);
});

test.serial('a small batch over a large set (9,000 rows, 300 clusters of 30): pruned, spread posteriors, within 1e-4 of float64', (t) => {
  // every cluster's 30 members are spread over the whole row range
  const Y = clustered(9000, 32, 0, 41, 300);
  const set = new ReferenceSet(Y, 32);
  const means = new Float32Array(2 * 32);
  for (let c = 0; c < 2; c++) for (let m = 0; m < 30; m++) for (let k = 0; k < 32; k++) means[c * 32 + k] += Y[(c + 300 * m) * 32 + k] / 30;
  for (const sigma of [0.1, 0.2]) {
    const x = noisy(means, 0.02, 31);
    const st = set.estimateWithStats(x, { sigma, outputs: ['mean', 'ess'] });
    t.is(st.sparseQueries, 2, `sigma ${sigma}: pruned`);
    t.true(Math.min(...st.result.ess) > 2, `sigma ${sigma}: spread posterior`);
    checkAgainstFloat64(t, set, Y, 32, x, sigma, 'gaussian', 'sharded');
  }
});

test('a block with at most a quarter of its queries left in the scan sends them to the full pass too (give-up rule)', (t) => {
  // 32 queries with per-sample sigma: training digits at sigma 0.01 (sparse) and the rest at
  // sigma 80 (broad, handed to the full pass before any bound). Indices 0, 1, 16, 17 put 4 of 32
  // (AVX-512 block) or 2 of 16 (AVX2 blocks) in the scan: they follow the others. Indices
  // 0-7 and 16-23 put half of every block there: they finish in the pruned pass.
  const B = 32;
  for (const [sparse, finished] of [[[0, 1, 16, 17], 0], [[0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23], 16]] as const) {
    const sigma = new Float32Array(B).fill(80);
    const base = new Float32Array(B * d);
    for (let i = 0; i < B; i++) {
      const row = (i * 71 + 13) % N;
      base.set(train.subarray(row * d, (row + 1) * d), i * d);
    }
    const x = new Float32Array(B * d);
    for (let i = 0; i < B; i++) {
      if ((sparse as readonly number[]).includes(i)) sigma[i] = 0.01;
      x.set(noisy(base.subarray(i * d, (i + 1) * d), sigma[i], 300 + i), i * d);
    }
    const st = ref.estimateWithStats(x, { sigma, outputs: ['mean'] });
    t.is(st.sparseQueries, finished, `${sparse.length} sparse queries`);
    let worst = 0;
    for (const i of sparse) {
      const want = reference(train, d, x.subarray(i * d, (i + 1) * d), sigma[i], 'gaussian');
      worst = Math.max(worst, relErr(st.result.mean, want.mean, i * d));
    }
    t.true(worst < 1e-4, `${sparse.length} sparse queries: ${worst}`);
  }
});

test.serial('probe blocks: at one sigma where the first two query blocks leave no query to prune, the other blocks go straight to the full pass', (t) => {
  // 160 held-out digits (5 blocks of 32 with AVX-512, 10 of 16 with AVX2): at sigma 1 their
  // bounds are too loose to prune, so only the first two blocks are attempted; with the same
  // sigma given per sample, or at sigma 0.01 (prunable), every block is.
  const B = 160;
  const heldB = mnist.data.slice(N * d, (N + B) * d);
  const x = noisy(heldB, 1, 41);
  const one = ref.estimateWithStats(x, { sigma: 1, outputs: ['mean'] });
  t.is(one.sparseQueries, 0);
  t.true(one.skippedBlocks >= 3, `skipped ${one.skippedBlocks} blocks`);
  const per = ref.estimateWithStats(x, { sigma: new Float32Array(B).fill(1), outputs: ['mean'] });
  t.is(per.skippedBlocks, 0);
  t.is(per.sparseQueries, 0);
  setPruning(false);
  const full = ref.estimate(x, { sigma: 1, outputs: ['mean'] });
  setPruning(true);
  let worst = 0;
  for (let i = 0; i < B; i += 7) {
    const want = reference(train, d, x.subarray(i * d, (i + 1) * d), 1, 'gaussian');
    worst = Math.max(worst, relErr(one.result.mean, want.mean, i * d), relErr(full.mean, want.mean, i * d));
  }
  t.true(worst < 1e-4, `worst ${worst}`);
  const small = ref.estimateWithStats(noisy(heldB, 0.01, 42), { sigma: 0.01, outputs: ['mean'] });
  t.is(small.skippedBlocks, 0);
  t.true(small.sparseQueries > B / 2, `${small.sparseQueries} finished by the pruned pass`);
});

test.serial('probe blocks under concurrent async calls and any thread count: every call resolves with the bits of the same call alone', async (t) => {
  // Blocks after the probe wait inside the pool for the probe blocks; concurrent requests share
  // the pool's queue. Requests at sigma 1 (probe skips) and 0.01 (every block attempted), 1, 2
  // and 3 threads, eight calls in flight.
  const B = 160;
  const heldB = mnist.data.slice(N * d, (N + B) * d);
  const xs = [noisy(heldB, 1, 51), noisy(heldB, 0.01, 52)];
  const sigmas = [1, 0.01];
  const alone = xs.map((x, i) => ref.estimate(x, { sigma: sigmas[i], outputs: ['mean'] }).mean);
  try {
    for (const threads of [1, 2, 3]) {
      setThreads(threads);
      const calls = Array.from({ length: 8 }, (_, k) => ref.estimateAsync(xs[k % 2], { sigma: sigmas[k % 2], outputs: ['mean'] }));
      const got = await Promise.all(calls);
      got.forEach((r, k) => t.deepEqual(r.mean, alone[k % 2], `threads ${threads}, call ${k}`));
    }
  } finally {
    setThreads(capabilities().hardwareThreads);
  }
});
