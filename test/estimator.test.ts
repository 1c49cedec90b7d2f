import test from 'ava';
import { capabilities, poisson, radial, ReferenceSet, setSimdLevel, setThreads, stableTargets, type SimdLevel } from '../lib/index';
import { mnistLike, noisyQueries, referenceEstimate, relErr, toy2d } from './helpers/estimator-ref';
import { SIGMAS, sweep, type Worst } from './helpers/precision';
import { bitsEqual, rand } from './helpers/reference';

const ALL = ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] as const;

function within(t: import('ava').ExecutionContext, w: Worst, bar: number, what: string) {
  t.log(`${what}: worst relative error mean ${w.mean.toExponential(2)}, score ${w.score.toExponential(2)}, logDensity ${w.logDensity.toExponential(2)}`);
  t.true(w.mean <= bar, `${what} mean ${w.mean}`);
  t.true(w.score <= bar, `${what} score ${w.score}`);
  t.true(w.logDensity <= bar, `${what} logDensity ${w.logDensity}`);
}

test('MNIST-like data (784 dims in [-1, 1]): mean, score, logDensity within 1e-4 of float64 for sigma 0.002..80', (t) => {
  const Y = mnistLike(600, 1);
  within(t, sweep(Y, 784, 12, SIGMAS), 1e-4, 'mnist-like');
});

test('2-d toy set, and the same set shifted by 10 (sigma down to 0.01 there)', (t) => {
  within(t, sweep(toy2d(3000, 2), 2, 48, SIGMAS), 1e-4, 'toy');
  within(t, sweep(toy2d(3000, 3, 10), 2, 48, [0.002, 0.01, 0.1, 1, 80]), 1e-4, 'toy shifted by 10');
});

test('VP-style alpha < 1 and per-sample sigma and alpha agree with float64 and with scalar calls', (t) => {
  const d = 16;
  const Y = rand(2000 * d, 11, -1, 1);
  const ref = new ReferenceSet(Y, d);
  const B = 37; // lanes path plus a partial block
  const sigma = rand(B, 12, 0.05, 2);
  const alpha = rand(B, 13, 0.3, 1);
  const x = noisyQueries(Y, d, B, 0.7, 0.5, 14);
  const r = ref.estimate(x, { sigma, alpha, outputs: ['mean', 'score', 'logDensity'] });
  for (let i = 0; i < B; i++) {
    const want = referenceEstimate(Y, d, x.subarray(i * d, (i + 1) * d), alpha[i], sigma[i]);
    t.true(relErr(r.mean, want.mean, i * d) < 1e-4, `mean ${i}`);
    t.true(relErr(r.score, want.score, i * d) < 1e-4, `score ${i}`);
    t.true(Math.abs(r.logDensity[i] - want.logDensity) < 1e-4 * Math.max(1, Math.abs(want.logDensity)), `logDensity ${i}`);
    const one = ref.estimate(x.subarray(i * d, (i + 1) * d), { sigma: sigma[i], alpha: alpha[i] });
    t.true(relErr(one.mean, Array.from(r.mean.subarray(i * d, (i + 1) * d))) < 1e-5, `single query ${i} agrees with the batch`);
  }
});

test('structured cases: duplicates, a query on a data point, a far outlier, N = 1, d = 1, B = 1', (t) => {
  // Duplicates: three copies of each point weigh three times.
  const base = toy2d(50, 21);
  const dup = new Float32Array(base.length * 3);
  for (let c = 0; c < 3; c++) dup.set(base, c * base.length);
  const x = noisyQueries(base, 2, 20, 1, 0.05, 22);
  const a = new ReferenceSet(base, 2).estimate(x, { sigma: 0.05, outputs: ['mean', 'score', 'logDensity', 'ess'] });
  const b = new ReferenceSet(dup, 2).estimate(x, { sigma: 0.05, outputs: ['mean', 'score', 'logDensity', 'ess'] });
  for (let i = 0; i < 20; i++) {
    t.true(relErr(b.mean, Array.from(a.mean.subarray(2 * i, 2 * i + 2)), 2 * i) < 1e-5);
    t.true(Math.abs(b.logDensity[i] - a.logDensity[i]) < 1e-4, 'same density: duplicates do not change the distribution');
    t.true(Math.abs(b.ess[i] / a.ess[i] - 3) < 1e-3, 'ESS triples');
  }
  // A query exactly on a data point at tiny sigma: the mean is that point, the score 0.
  const Y = mnistLike(50, 23);
  const ref = new ReferenceSet(Y, 784);
  const on = Y.slice(7 * 784, 8 * 784);
  const r = ref.estimate(on, { sigma: 0.002, outputs: ['mean', 'score', 'ess', 'traceCov'] });
  t.true(bitsEqual(r.mean, on));
  t.true(r.score.every((v) => v === 0));
  t.is(r.ess[0], 1);
  t.is(r.traceCov[0], 0);
  // One far outlier in the data and a query near it.
  const withOutlier = new Float32Array(Y);
  withOutlier.fill(1e3, 0, 784);
  const far = new Float32Array(784).fill(999.5);
  const ro = new ReferenceSet(withOutlier, 784).estimate(far, { sigma: 1, outputs: ['mean', 'logDensity'] });
  const want = referenceEstimate(withOutlier, 784, far, 1, 1);
  t.true(relErr(ro.mean, want.mean) < 1e-6);
  t.true(Math.abs(ro.logDensity[0] - want.logDensity) < 1e-4 * Math.abs(want.logDensity));
  // N = 1: the mean is the point whatever x.
  const single = new ReferenceSet(Float32Array.of(0.5, -2), 2);
  const rs = single.estimate(Float32Array.of(10, 10, -3, 4), { sigma: 0.1, outputs: ['mean', 'ess', 'traceCov'] });
  t.deepEqual(Array.from(rs.mean), [0.5, -2, 0.5, -2]);
  t.deepEqual(Array.from(rs.ess), [1, 1]);
  // d = 1, B = 1.
  const line = rand(999, 24, -3, 3);
  const r1 = new ReferenceSet(line, 1).estimate(Float32Array.of(0.25), { sigma: 0.3, outputs: ALL as unknown as 'mean'[] });
  const w1 = referenceEstimate(line, 1, [0.25], 1, 0.3);
  t.true(Math.abs(r1.mean[0] - w1.mean[0]) < 1e-5);
});

test('identities: score = (alpha m - x)/sigma^2, 1 <= ESS <= N, traceCov >= 0, divergence formula', (t) => {
  const d = 8;
  const N = 3000;
  const Y = rand(N * d, 31, -1, 1);
  const ref = new ReferenceSet(Y, d);
  for (const sigma of [0.01, 0.3, 5]) {
    const B = 40;
    const x = noisyQueries(Y, d, B, 0.9, sigma, 32);
    const r = ref.estimate(x, { sigma, alpha: 0.9, outputs: [...ALL] });
    for (let i = 0; i < B; i++) {
      for (let k = 0; k < d; k++) {
        const s = (0.9 * r.mean[i * d + k] - x[i * d + k]) / sigma ** 2;
        t.true(Math.abs(r.score[i * d + k] - s) <= 1e-5 * Math.abs(s) + 1e-6 / sigma ** 2, 'score identity');
      }
      t.true(r.ess[i] >= 1 - 1e-6 && r.ess[i] <= N * (1 + 1e-6));
      t.true(r.traceCov[i] >= 0);
      const div = (0.81 * r.traceCov[i]) / sigma ** 2 - d;
      t.true(Math.abs(r.divergence[i] - div / sigma ** 2) <= 1e-5 * Math.abs(div / sigma ** 2) + 1e-3);
    }
  }
});

test('traceCov, ESS and divergence match float64', (t) => {
  const d = 5;
  const Y = toy2d(2000, 41).subarray(0, 2000 * 2);
  const Y5 = rand(1500 * d, 42, -1, 1);
  for (const [data, dim] of [[Y, 2], [Y5, d]] as const) {
    const ref = new ReferenceSet(data, dim);
    for (const sigma of [0.05, 0.5, 3]) {
      const x = noisyQueries(data, dim, 10, 1, sigma, 43);
      const r = ref.estimate(x, { sigma, outputs: ['ess', 'traceCov', 'divergence'] });
      t.deepEqual(Object.keys(r).sort(), ['divergence', 'ess', 'traceCov']);
      for (let i = 0; i < 10; i++) {
        const w = referenceEstimate(data, dim, x.subarray(i * dim, (i + 1) * dim), 1, sigma);
        t.true(Math.abs(r.ess[i] - w.ess) <= 1e-4 * w.ess, `ess ${r.ess[i]} vs ${w.ess}`);
        t.true(Math.abs(r.traceCov[i] - w.traceCov) <= 1e-4 * w.traceCov + 1e-6, `traceCov ${r.traceCov[i]} vs ${w.traceCov}`);
        t.true(Math.abs(r.divergence[i] - w.divergence) <= 1e-4 * Math.abs(w.divergence) + 1e-3);
      }
    }
  }
});

test('divergence matches a central finite-difference estimate of the score', (t) => {
  const d = 3;
  const Y = rand(400 * d, 51, -1, 1);
  const ref = new ReferenceSet(Y, d);
  const sigma = 0.4;
  const x = Float32Array.of(0.1, -0.2, 0.3);
  const div = ref.estimate(x, { sigma, outputs: ['divergence'] }).divergence[0];
  const h = 1e-3;
  let fd = 0;
  for (let k = 0; k < d; k++) {
    const xp = x.slice();
    const xm = x.slice();
    xp[k] += h;
    xm[k] -= h;
    // float64 scores at the perturbed points (the float32 engine's differences would be noise)
    const sp = referenceEstimate(Y, d, Float64Array.from(x, (v, i) => v + (i === k ? h : 0)), 1, sigma).score[k];
    const sm = referenceEstimate(Y, d, Float64Array.from(x, (v, i) => v - (i === k ? h : 0)), 1, sigma).score[k];
    fd += (sp - sm) / (2 * h);
  }
  t.true(Math.abs(div - fd) < 1e-3 * Math.abs(fd), `${div} vs ${fd}`);
});

test('partial states over shards merge to the unsharded result; states survive structuredClone', (t) => {
  const d = 6;
  const N = 5000;
  const Y = rand(N * d, 61, -1, 1);
  const ref = new ReferenceSet(Y, d);
  const x = noisyQueries(Y, d, 20, 1, 0.3, 62);
  const opts = { sigma: 0.3, outputs: [...ALL] };
  const whole = ref.estimate(x, opts);
  const cuts = [0, 1, 1234, 1234, 4000, N]; // includes an empty shard
  const parts = [];
  for (let i = 0; i + 1 < cuts.length; i++) parts.push(structuredClone(ref.estimatePartial(x, { sigma: 0.3, start: cuts[i], end: cuts[i + 1] })));
  const merged = ReferenceSet.mergePartials(parts.reverse());
  t.is(merged.count, N);
  const fin = ReferenceSet.finalizePartial(merged, x, opts);
  for (const k of ALL) {
    for (let i = 0; i < whole[k].length; i++) {
      t.true(Math.abs(fin[k][i] - whole[k][i]) <= 1e-5 * Math.max(1, Math.abs(whole[k][i])), `${k}[${i}] ${fin[k][i]} vs ${whole[k][i]}`);
    }
  }
  // Shards held by different reference sets (different centres) merge too.
  const a = new ReferenceSet(Y.subarray(0, 2000 * d), d).estimatePartial(x, { sigma: 0.3 });
  const b = new ReferenceSet(Y.subarray(2000 * d), d).estimatePartial(x, { sigma: 0.3 });
  const fin2 = ReferenceSet.finalizePartial(ReferenceSet.mergePartials([a, b]), x, { sigma: 0.3 });
  t.true(relErr(fin2.mean, Array.from(whole.mean.subarray(0, d))) < 1e-5);
});

test.serial('every SIMD path gives float64-accurate results; thread counts 1, 2, 3 give identical bits', (t) => {
  const d = 40;
  const Y = rand(3000 * d, 71, -1, 1);
  const ref = new ReferenceSet(Y, d);
  for (const B of [1, 5, 64]) {
    const x = noisyQueries(Y, d, B, 1, 0.2, 72 + B);
    const want = Array.from({ length: B }, (_, i) => referenceEstimate(Y, d, x.subarray(i * d, (i + 1) * d), 1, 0.2));
    for (const level of capabilities().simdAvailable as SimdLevel[]) {
      setSimdLevel(level);
      let base: Record<string, Float32Array> | undefined;
      for (const n of [1, 2, 3]) {
        setThreads(n);
        const r = ref.estimate(x, { sigma: 0.2, outputs: [...ALL] });
        if (!base) {
          base = r;
          for (let i = 0; i < B; i++) t.true(relErr(r.mean, want[i].mean, i * d) < 1e-5, `${level} B=${B} mean`);
        } else {
          for (const k of ALL) t.true(bitsEqual(r[k], base[k]), `${level} B=${B} ${k} threads=${n}`);
        }
      }
    }
  }
  setThreads(capabilities().hardwareThreads);
  setSimdLevel(capabilities().simdAvailable[0] as SimdLevel);
});

test.serial('many query blocks run in groups over the same tiles: float64-accurate, the same bits for 1, 2, 3 and 5 threads', (t) => {
  // B = 300 is 10 blocks of 32 (AVX-512) or 19 of 16 (AVX2), the last one ragged: 1 thread runs
  // them in groups of 4, 2 threads in groups of 2, 3 and 5 threads one block at a time
  // (fused_pass.cpp, Plan::group). d = 200 takes the general path, d = 24 the small-d one.
  for (const d of [200, 24]) {
    const Y = rand(2500 * d, 91 + d, -1, 1);
    const ref = new ReferenceSet(Y, d);
    const B = 300;
    const x = noisyQueries(Y, d, B, 1, 0.6, 92 + d);
    for (const level of capabilities().simdAvailable as SimdLevel[]) {
      setSimdLevel(level);
      let base: Record<string, Float32Array> | undefined;
      for (const n of [1, 2, 3, 5]) {
        setThreads(n);
        const r = ref.estimate(x, { sigma: 0.6, outputs: [...ALL] });
        if (!base) base = r;
        else for (const k of ALL) t.true(bitsEqual(r[k], base[k]), `${level} d=${d} ${k} threads=${n}`);
      }
      let worst = 0;
      for (const i of [0, 31, 32, 150, 287, 288, 299]) {
        const want = referenceEstimate(Y, d, x.subarray(i * d, (i + 1) * d), 1, 0.6);
        worst = Math.max(worst, relErr(base!.mean, want.mean, i * d));
      }
      t.true(worst < 1e-5, `${level} d=${d}: ${worst}`);
    }
  }
  setThreads(capabilities().hardwareThreads);
  setSimdLevel(capabilities().simdAvailable[0] as SimdLevel);
});

test('async calls in parallel with sync calls give the same results; out buffers are used', async (t) => {
  const d = 32;
  const Y = rand(4000 * d, 81, -1, 1);
  const ref = await ReferenceSet.createAsync(Y, d);
  t.is(ref.size, 4000);
  const xs = [1, 7, 40, 100].map((B, i) => noisyQueries(Y, d, B, 1, 0.5, 82 + i));
  const pending = xs.map((x) => ref.estimateAsync(x, { sigma: 0.5, outputs: ['mean', 'logDensity'] }));
  const sync = xs.map((x) => ref.estimate(x, { sigma: 0.5, outputs: ['mean', 'logDensity'] }));
  const done = await Promise.all(pending);
  for (let i = 0; i < xs.length; i++) {
    t.true(bitsEqual(done[i].mean, sync[i].mean));
    t.true(bitsEqual(done[i].logDensity, sync[i].logDensity));
  }
  const mean = new Float32Array(7 * d);
  const r = ref.estimate(xs[1], { sigma: 0.5, outputs: ['mean'], out: { mean } });
  t.is(r.mean, mean);
  t.true(bitsEqual(mean, sync[1].mean));
  t.deepEqual(Object.keys(r), ['mean']);
});

test('a set built without row panels holds one copy of the rows and gives the same bits', async (t) => {
  const d = 100;
  const Y = rand(3000 * d, 71);
  const withPanels = new ReferenceSet(Y, d);
  const without = new ReferenceSet(Y, d, { panels: false });
  const withoutAsync = await ReferenceSet.createAsync(Y, d, { panels: false });
  // the panels: 250 panels of 12 rows x d floats, and nothing else
  t.is(withPanels.byteLength - without.byteLength, 250 * 12 * d * 4);
  t.is(withoutAsync.byteLength, without.byteLength);
  // B = 64 (queries in vector lanes, where the panels are read), sigmas where no pair is
  // recomputed (the panels throughout) and where some are; a nonlinear kernel too
  const x = rand(64 * d, 72);
  for (const sigma of [0.3, 3, 30]) {
    for (const kernel of [undefined, poisson({ D: 1 })]) {
      const a = withPanels.estimate(x, { sigma, kernel, outputs: ['mean', 'logDensity', 'ess'] });
      const b = without.estimate(x, { sigma, kernel, outputs: ['mean', 'logDensity', 'ess'] });
      const c = await withoutAsync.estimateAsync(x, { sigma, kernel, outputs: ['mean'] });
      t.true(bitsEqual(a.mean!, b.mean!), `mean, sigma ${sigma}`);
      t.true(bitsEqual(a.logDensity!, b.logDensity!), `logDensity, sigma ${sigma}`);
      t.true(bitsEqual(a.ess!, b.ess!), `ess, sigma ${sigma}`);
      t.true(bitsEqual(a.mean!, c.mean!), `async mean, sigma ${sigma}`);
    }
  }
  // partial states over a range that starts and ends inside a panel
  const pa = withPanels.estimatePartial(x, { sigma: 3, start: 7, end: 2901 });
  const pb = without.estimatePartial(x, { sigma: 3, start: 7, end: 2901 });
  t.deepEqual(pa, pb);
  t.throws(() => new ReferenceSet(Y, d, { panels: 'no' as unknown as boolean }), { name: 'ScorefieldTypeError', message: /options\.panels/ });
  t.throws(() => new ReferenceSet(Y, d, 5 as unknown as { panels: boolean }), { name: 'ScorefieldTypeError', message: /options/ });
  await t.throwsAsync(ReferenceSet.createAsync(Y, d, { panels: 1 as unknown as boolean }), { name: 'ScorefieldTypeError', message: /options\.panels/ });
});

test('memory: the set reports its footprint; working memory is O(B d + threads x tile), never O(B N)', (t) => {
  const d = 64;
  const small = new ReferenceSet(rand(1000 * d, 91), d);
  const big = new ReferenceSet(rand(20000 * d, 92), d);
  // the rows twice (row-major, and the row panels of the fused pass's GEMMs) plus per-row norms
  t.true(small.byteLength >= 2 * 1000 * d * 4 && small.byteLength < 2 * 1000 * d * 4 * 1.1, `${small.byteLength}`);
  // exact pruning (sets of 1,024 rows and more) keeps at most 2,048 + 1,024 candidate pairs of
  // 8 bytes per query between its phases (twice that for vector growth): 12.6 MB at B = 256
  t.true(big.workingMemory(256) < 2 * small.workingMemory(256) + 1e6 + 256 * 3072 * 16 + 2e6, 'does not grow with N');
  const bigger = new ReferenceSet(rand(40000 * d, 93), d);
  t.true(bigger.workingMemory(256) <= big.workingMemory(256) * 1.05 + 1e5, 'nor with N beyond the fixed budget');
  t.true(big.workingMemory(256) < 256 * 20000 * 4, 'far below a B x N matrix');
});

test('stable targets: lower variance than the conditional target on a toy set at large sigma', (t) => {
  // Data: a 2-d toy set (its empirical distribution is the data distribution). For pairs
  // (x0, x) the conditional target -(x - x0)/sigma^2 and the stable target (score over a
  // reference batch of 512 points plus x0) both aim at the true score; compare their mean
  // squared deviation from it (computed over all 4000 points).
  const all = toy2d(4000, 101);
  const full = new ReferenceSet(all, 2);
  const batch = new ReferenceSet(all.subarray(0, 512 * 2), 2);
  const sigma = 1;
  const B = 400;
  const idx = rand(B, 102, 0, 4000);
  const x0 = new Float32Array(2 * B);
  for (let i = 0; i < B; i++) x0.set(all.subarray(2 * Math.floor(idx[i]), 2 * Math.floor(idx[i]) + 2), 2 * i);
  const eps = rand(2 * B, 103, -1.7, 1.7);
  const x = x0.map((v, i) => v + sigma * eps[i]);
  const truth = full.estimate(x, { sigma, outputs: ['score'] }).score;
  const stf = stableTargets(x0, x, batch, { sigma });
  let mseStf = 0;
  let mseCond = 0;
  for (let i = 0; i < 2 * B; i++) {
    const cond = -(x[i] - x0[i]) / sigma ** 2;
    mseStf += (stf[i] - truth[i]) ** 2;
    mseCond += (cond - truth[i]) ** 2;
  }
  t.log(`MSE to the true score: conditional ${(mseCond / B).toFixed(4)}, stable target ${(mseStf / B).toFixed(4)}`);
  t.true(mseStf < 0.1 * mseCond);
});

test('extremes: d = 12288, sigma from 1e-3 to 1e3, log-weights of -1e7 and below', (t) => {
  const d = 12288;
  const N = 64;
  const Y = rand(N * d, 111, -1, 1);
  const ref = new ReferenceSet(Y, d);
  for (const sigma of [1e-3, 1e-1, 10, 1e3]) {
    const x = noisyQueries(Y, d, 3, 1, sigma, 112);
    const r = ref.estimate(x, { sigma, outputs: ['mean', 'score', 'logDensity', 'ess'] });
    for (let i = 0; i < 3; i++) {
      const want = referenceEstimate(Y, d, x.subarray(i * d, (i + 1) * d), 1, sigma);
      t.true(relErr(r.mean, want.mean, i * d) < 1e-4, `sigma ${sigma} mean`);
      t.true(relErr(r.score, want.score, i * d) < 1e-4, `sigma ${sigma} score`);
      t.true(Math.abs(r.logDensity[i] - want.logDensity) <= 1e-4 * Math.max(1, Math.abs(want.logDensity)), `sigma ${sigma} logDensity`);
    }
  }
  // A query far from every point at tiny sigma: every log-weight is below -1e7, and the
  // softmax still finds the nearest point.
  const far = new Float32Array(d).fill(3);
  const want = referenceEstimate(Y, d, far, 1, 1e-3);
  t.true(want.logDensity < -1e7);
  const r = ref.estimate(far, { sigma: 1e-3, outputs: ['mean', 'logDensity', 'ess'] });
  t.true(relErr(r.mean, want.mean) < 1e-6);
  t.true(Math.abs(r.logDensity[0] - want.logDensity) <= 1e-4 * Math.abs(want.logDensity));
  t.true(Math.abs(r.ess[0] - want.ess) <= 1e-4 * want.ess);
});

test('finalizePartial: outputs may not overlap x or each other; empty shards and non-finite results are coded errors', (t) => {
  const d = 4;
  const Y = rand(200 * d, 71);
  const set = new ReferenceSet(Y, d);
  const x = rand(3 * d, 72);
  const st = set.estimatePartial(x, { sigma: 0.5 });
  const xCopy = x.slice();
  t.throws(() => ReferenceSet.finalizePartial(st, x, { sigma: 0.5, outputs: ['mean'], out: { mean: x } }), { code: 'ERR_SCOREFIELD_ALIAS' });
  const shared = new Float32Array(3 * d);
  t.throws(() => ReferenceSet.finalizePartial(st, x, { sigma: 0.5, outputs: ['mean', 'score'], out: { mean: shared, score: shared } }), { code: 'ERR_SCOREFIELD_ALIAS' });
  t.true(bitsEqual(x, xCopy), 'x untouched');
  // an empty shard alone has no references to average
  const empty = set.estimatePartial(x, { sigma: 0.5, start: 50, end: 50 });
  t.throws(() => ReferenceSet.finalizePartial(empty, x, { sigma: 0.5 }), { code: 'ERR_SCOREFIELD_RANGE', message: /no references/ });
  // merged with a non-empty one it is fine
  const merged = ReferenceSet.mergePartials([empty, st]);
  t.true(bitsEqual(ReferenceSet.finalizePartial(merged, x, { sigma: 0.5 }).mean, set.estimate(x, { sigma: 0.5 }).mean));
  // valid but extreme inputs whose float32 arithmetic overflows: a coded error naming sigma,
  // never a silent NaN (identical rows at sigma 1e-20, Poisson tau 1e20, radial t 1e30)
  const same = new ReferenceSet(new Float32Array(50 * d).fill(0.25), d);
  const q = new Float32Array(d).fill(0.25);
  t.throws(() => same.estimate(q, { sigma: 1e-20, outputs: ['mean'] }), { code: 'ERR_SCOREFIELD_RANGE', message: /finite in float32 .*sigma 1e-20/ });
  t.true(same.estimate(q, { sigma: 1e-3, outputs: ['mean'] }).mean.every((v) => v === 0.25));
  t.throws(() => set.estimate(x, { sigma: 1e20, kernel: poisson({ D: 1 }), outputs: ['mean'] }), { code: 'ERR_SCOREFIELD_RANGE', message: /finite/ });
  t.throws(() => set.estimate(x, { sigma: 1e30, kernel: radial('tanh'), outputs: ['mean', 'logDensity'] }), { code: 'ERR_SCOREFIELD_RANGE', message: /finite/ });
  t.true(set.estimate(x, { sigma: 1e6, kernel: poisson({ D: 1 }), outputs: ['mean'] }).mean.every(Number.isFinite));
});

test('options are read once, before validation: a getter cannot change a value after it was checked', (t) => {
  const d = 4;
  const set = new ReferenceSet(rand(300 * d, 81), d);
  const x = rand(2 * d, 82);
  for (const bad of [Number.NaN, -1, 0]) {
    const sigma = new Float32Array([0.5, 0.5]);
    let reads = 0;
    const options = {
      sigma,
      get alpha() {
        reads++;
        sigma[0] = bad;  // after sigma was read
        return 1;
      },
    };
    t.throws(() => set.estimate(x, options), { code: 'ERR_SCOREFIELD_RANGE' });
    t.is(reads, 1, 'each option read exactly once');
  }
  // the native engine checks per-sample coefficients too (a caller of the binding itself)
  const sigma = new Float32Array([0.5, Number.NaN]);
  const e = t.throws(() => set.estimate(x, { sigma }), { code: 'ERR_SCOREFIELD_RANGE' });
  t.regex(e!.message, /sigma/);
});
