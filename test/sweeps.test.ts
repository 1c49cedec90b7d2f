// Numerical sweeps (issue 8): sigma from 1e-4 to 1e4, d from 1 to 12288, data magnitudes up to
// 1e6. Every output must be finite wherever the mathematics is finite; non-finite inputs get
// a coded error (the bad-input matrix checks those).
import test from 'ava';
import { capabilities, conditionalScore, perturb, poisson, radial, randn, ReferenceSet, schedules, dsmLoss, eulerStep, setSimdLevel, type Kernel } from '../lib/index';

const SIGMAS = [1e-4, 1e-2, 1, 1e2, 1e4];
const DIMS = [1, 3, 64, 784, 12288];
const MAGNITUDES = [1, 1e3, 1e6];

const allFinite = (a: Float32Array) => a.every(Number.isFinite);

test('the estimator: every output finite over sigma, d and data magnitude, for every kernel', (t) => {
  let checked = 0;
  const bad: string[] = [];
  for (const d of DIMS) {
    const N = d >= 784 ? 12 : 200;
    for (const mag of MAGNITUDES) {
      const Y = randn(N * d, { seed: d + mag, dim: d }).map((v) => mag * v);
      const ref = new ReferenceSet(Y, d);
      for (const sigma of SIGMAS) {
        // queries: a data point plus sigma noise, and a far point
        const x = new Float32Array(2 * d);
        const eps = randn(2 * d, { seed: 3, dim: d });
        for (let k = 0; k < d; k++) {
          x[k] = Y[k] + sigma * eps[k];
          x[d + k] = 3 * mag + sigma * eps[d + k];
        }
        const kernels: Array<[string, Kernel | undefined]> = [['gaussian', undefined], ['poisson', poisson({ D: 8 })], ['tanh', radial('tanh')]];
        for (const [name, kernel] of kernels) {
          const outputs = kernel ? (['mean', 'logDensity', 'ess', 'traceCov'] as const) : (['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] as const);
          const r = ref.estimate(x, { sigma, kernel, outputs: [...outputs] }) as Record<string, Float32Array>;
          for (const o of outputs) {
            checked++;
            if (!allFinite(r[o])) bad.push(`${name} d=${d} |y|~${mag} sigma=${sigma}: ${o} = ${Array.from(r[o].subarray(0, 3))}`);
          }
          if (r.ess.some((v) => v < 1 - 1e-4 || v > N * (1 + 1e-4))) bad.push(`${name} d=${d} |y|~${mag} sigma=${sigma}: ess out of [1, N]`);
        }
      }
    }
  }
  t.log(`${checked} outputs checked`);
  t.deepEqual(bad, []);
});

test('targets and steps: finite over sigma and magnitude', (t) => {
  const bad: string[] = [];
  for (const mag of MAGNITUDES) {
    for (const sigma of SIGMAS) {
      const x0 = randn(4096, { seed: 1 }).map((v) => mag * v);
      const eps = randn(4096, { seed: 2 });
      const x = perturb(x0, eps, 1, sigma);
      const s = conditionalScore(x, x0, 1, sigma);
      const { loss } = dsmLoss(s, s.map((v) => v * 0.5), { weight: 'sigma2', sigma, dim: 64 });
      const step = eulerStep(x, x0, sigma, sigma / 2);
      if (!allFinite(x) || !allFinite(s) || !Number.isFinite(loss) || !allFinite(step)) bad.push(`|x0|~${mag} sigma=${sigma}`);
    }
  }
  t.deepEqual(bad, []);
});

test('native sampling from sigma 1e4 down to 1e-4 and 0, data up to 1e6: finite samples on the data', async (t) => {
  for (const [d, mag] of [[2, 1e6], [64, 1e3], [784, 1]] as const) {
    const Y = randn(100 * d, { seed: 5, dim: d }).map((v) => mag * v);
    const ref = new ReferenceSet(Y, d);
    const sigmas = schedules.karrasSigmas(24, { sigmaMin: 1e-4, sigmaMax: 1e4 * Math.max(1, mag / 100) });
    const { x } = await ref.sample({ sigmas, batch: 8, seed: 1 });
    t.true(allFinite(x), `d=${d} mag=${mag}`);
    // every sample ends on (or within float rounding of) a data point
    for (let i = 0; i < 8; i++) {
      let best = Infinity;
      for (let j = 0; j < 100; j++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += (x[i * d + k] - Y[j * d + k]) ** 2;
        best = Math.min(best, Math.sqrt(s));
      }
      t.true(best < 1e-4 * mag * Math.sqrt(d) + 1e-3, `d=${d} mag=${mag}: ${best}`);
    }
  }
});

test('fuzz regressions: a query exactly at the centre of far-spread data (AVX-512 log of an overflowed ratio), float32-overflowing data', (t) => {
  for (const level of capabilities().simdAvailable) {
    setSimdLevel(level);
    for (const mag of [1e9, 1e11]) {
      const Y = randn(21 * 3, { seed: 4, dim: 3 }).map((v, i) => (i % 5 === 0 ? mag * v : 100 * v));
      const ref = new ReferenceSet(Y, 3);
      for (const kernel of [poisson({ D: 0.001 }), radial('tanh'), radial('exp')]) {
        const r = ref.estimate(ref.centre, { sigma: 122.8, kernel, outputs: ['mean', 'ess', 'logDensity'] });
        t.true(allFinite(r.mean) && allFinite(r.logDensity) && r.ess[0] >= 1 - 1e-4 && r.ess[0] <= 21 * (1 + 1e-4), `${level} ${kernel.kind} ${mag}: ${r.ess[0]} ${r.logDensity[0]}`);
      }
    }
  }
  setSimdLevel(capabilities().simdAvailable[0]);
  // values whose squares overflow float32: a coded error, not inf/NaN results
  const e = t.throws(() => new ReferenceSet(Float32Array.of(1, 2, -2e28, 3), 2));
  t.is((e as { code?: string }).code, 'ERR_SCOREFIELD_RANGE');
  const ref = new ReferenceSet(randn(20 * 2, { seed: 1, dim: 2 }).map((v) => 1e15 * v), 2);
  t.is((t.throws(() => ref.estimate(ref.centre, { sigma: 1e-6 })) as { code?: string }).code, 'ERR_SCOREFIELD_RANGE');
  // fuzz: log-weights near 1e32 (they reached the padded-lane mark), and alpha far from 1 with
  // data far from 0 (x - alpha centre overflows float32 although x - centre is 0)
  const far = new ReferenceSet(randn(11 * 4, { seed: 2, dim: 4 }).map((v) => 1e10 * v), 4);
  const code = (f: () => unknown) => (t.throws(f) as { code?: string }).code;
  t.is(code(() => far.estimate(far.rows([0]), { sigma: 1e-6, alpha: 1000 })), 'ERR_SCOREFIELD_RANGE');
  const flat = new ReferenceSet(new Float32Array(12).fill(7.7e31), 1);
  t.is(code(() => flat.estimate(Float32Array.of(7.7e31), { sigma: 1e6, alpha: 1000 })), 'ERR_SCOREFIELD_RANGE');
  t.true(allFinite(flat.estimate(Float32Array.of(7.7e31), { sigma: 1e6 }).mean), 'alpha = 1 at the same place is fine');
});
