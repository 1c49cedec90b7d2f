// Poisson-flow and radial-CDF kernels in the estimator (MATH.md section 4).
import test from 'ava';
import { gaussian, poisson, radial, ReferenceSet, type Kernel } from '../lib/index';
import { noisyQueries, toy2d } from './helpers/estimator-ref';
import { rand } from './helpers/reference';

/** Float64 log-weight of each kernel (MATH.md), up to a constant. */
function logw(kernel: Kernel, r2: number, tau: number, d: number): number {
  switch (kernel.kind) {
    case 'gaussian':
      return -r2 / (2 * tau * tau);
    case 'poisson':
      return -((d + kernel.D) / 2) * Math.log(r2 + tau * tau);
    default: {
      const r = Math.max(Math.sqrt(r2), 1e-7 * tau);
      const u = r / tau;
      const lf = kernel.family === 'tanh' ? -2 * Math.log(Math.cosh(u)) : -u;
      return lf - (d - 1) * Math.log(r);
    }
  }
}

/** E[G_{>1}] / E[G_1] computed naively: the softmax-weighted mean and the field (x - m)/tau. */
function naiveMean(Y: Float32Array, d: number, x: ArrayLike<number>, kernel: Kernel, tau: number): Float64Array {
  const N = Y.length / d;
  const l = new Float64Array(N);
  let mx = -Infinity;
  for (let j = 0; j < N; j++) {
    let r2 = 0;
    for (let k = 0; k < d; k++) r2 += (x[k] - Y[j * d + k]) ** 2;
    l[j] = logw(kernel, r2, tau, d);
    mx = Math.max(mx, l[j]);
  }
  const m = new Float64Array(d);
  let s = 0;
  for (let j = 0; j < N; j++) {
    const w = Math.exp(l[j] - mx);
    s += w;
    for (let k = 0; k < d; k++) m[k] += w * Y[j * d + k];
  }
  return m.map((v) => v / s);
}

const KERNELS: Array<[string, Kernel]> = [
  ['poisson D=1', poisson()],
  ['poisson D=128', poisson({ D: 128 })],
  ['radial tanh', radial('tanh')],
  ['radial exp', radial('exp')],
];

test('the field of every family equals the naive float64 ratio of expectations', (t) => {
  for (const d of [1, 3, 64]) {
    const Y = rand(700 * d, 10 + d, -1, 1);
    const ref = new ReferenceSet(Y, d);
    for (const [name, kernel] of KERNELS) {
      for (const tau of [0.01, 0.2, 3]) {
        const x = noisyQueries(Y, d, 37, 1, tau, 20);
        const { mean } = ref.estimate(x, { sigma: tau, kernel, outputs: ['mean'] });
        let worst = 0;
        for (let i = 0; i < 37; i++) {
          const m = naiveMean(Y, d, x.subarray(i * d, (i + 1) * d), kernel, tau);
          // compare the fields (x - m)/tau relative to their norm, with the floor of the float32
          // mean they are formed from (16 float32 ulps, 2^-19 ||m|| / tau: the float tile sums of broad posteriors) for queries sitting at their mean
          const fw = m.map((v, k) => (x[i * d + k] - v) / tau);
          const fg = Float64Array.from({ length: d }, (_, k) => (x[i * d + k] - mean[i * d + k]) / tau);
          let e2 = 0;
          let n2 = 0;
          let m2 = 0;
          for (let k = 0; k < d; k++) {
            e2 += (fg[k] - fw[k]) ** 2;
            n2 += fw[k] ** 2;
            m2 += m[k] ** 2;
          }
          worst = Math.max(worst, Math.sqrt(e2) / (Math.sqrt(n2) + (2 ** -19 * Math.sqrt(m2)) / tau / 1e-4));
        }
        t.true(worst < 1e-4, `${name} d=${d} tau=${tau}: ${worst}`);
      }
    }
  }
});

test('logDensity is a normalised density: it integrates to 1 (d = 1, one reference point)', (t) => {
  const ref = new ReferenceSet(Float32Array.of(0.25), 1);
  for (const [name, kernel] of [['gaussian', gaussian()] as const, ...KERNELS]) {
    const tau = 0.5;
    // x spaced on a grid; Poisson D=1 is a Cauchy law: integrate far out, add the analytic tails
    const h = 0.01;
    const L = 2000;
    const xs = Float32Array.from({ length: 2 * L / h + 1 }, (_, i) => 0.25 - L + i * h);
    const { logDensity } = ref.estimate(xs, { sigma: tau, kernel, outputs: ['logDensity'] });
    let total = 0;
    for (let i = 0; i < xs.length; i++) total += Math.exp(logDensity[i]) * h * (i === 0 || i === xs.length - 1 ? 0.5 : 1);
    t.true(Math.abs(total - 1) < 1e-3, `${name}: ${total}`);
  }
});

test('as D grows with r = sigma sqrt(D), the Poisson posterior mean approaches the Gaussian one', (t) => {
  const d = 2;
  const Y = toy2d(2000, 31);
  const ref = new ReferenceSet(Y, d);
  const sigma = 0.2;
  const x = noisyQueries(Y, d, 200, 1, sigma, 32);
  const g = ref.estimate(x, { sigma, outputs: ['mean'] }).mean;
  const gaps: number[] = [];
  for (const D of [4, 64, 1024, 16384]) {
    const p = ref.estimate(x, { sigma: sigma * Math.sqrt(D), kernel: poisson({ D }), outputs: ['mean'] }).mean;
    let gap = 0;
    for (let i = 0; i < p.length; i++) gap += (p[i] - g[i]) ** 2;
    gaps.push(Math.sqrt(gap / 200));
  }
  t.log(`rms gap to the Gaussian posterior mean for D = 4, 64, 1024, 16384: ${gaps.map((v) => v.toExponential(2)).join(', ')}`);
  for (let i = 1; i < gaps.length; i++) t.true(gaps[i] < gaps[i - 1], 'shrinking');
  t.true(gaps[3] < 0.1 * gaps[0]);
});

test('non-Gaussian kernels: no score/divergence outputs, no alpha, extreme D and d do not overflow', (t) => {
  const ref = new ReferenceSet(rand(300 * 12288, 41, -1, 1).subarray(0, 300 * 12288), 12288);
  const x = noisyQueries(ref.centre.length ? rand(300 * 12288, 41, -1, 1) : new Float32Array(0), 12288, 2, 1, 0.5, 42);
  const r = ref.estimate(x, { sigma: 0.5 * 1000, kernel: poisson({ D: 1e6 }), outputs: ['mean', 'logDensity', 'ess'] });
  t.true(r.mean.every(Number.isFinite) && r.logDensity.every(Number.isFinite) && r.ess.every((v) => v >= 1));
  t.throws(() => ref.estimate(x, { sigma: 1, kernel: radial('tanh'), outputs: ['score'] }), { code: 'ERR_SCOREFIELD_UNSUPPORTED' });
  t.throws(() => ref.estimate(x, { sigma: 1, alpha: 0.5, kernel: poisson() }), { code: 'ERR_SCOREFIELD_SHAPE' });
  t.throws(() => poisson({ D: 0 }), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => radial('sigmoid' as 'tanh'), { code: 'ERR_SCOREFIELD_TYPE' });
});
