import test from 'ava';
import { capabilities, dsmLoss, dsmLossAsync, setSimdLevel, setThreads, type SimdLevel } from '../lib/index';
import { bitsEqual, rand } from './helpers/reference';

function refLoss(p: Float32Array, q: Float32Array, B: number, lambda: (i: number) => number) {
  const d = p.length / B;
  let loss = 0;
  const grad = new Float64Array(p.length);
  for (let i = 0; i < B; i++) {
    let s = 0;
    for (let k = 0; k < d; k++) {
      const e = p[i * d + k] - q[i * d + k];
      s += e * e;
      grad[i * d + k] = (2 * lambda(i) * e) / B;
    }
    loss += lambda(i) * s;
  }
  return { loss: loss / B, grad };
}

const close = (a: number, b: number, rtol: number) => Math.abs(a - b) <= rtol * Math.max(Math.abs(b), 1e-30);

test.serial('dsmLoss and its gradient match float64 on every SIMD path and odd lengths', (t) => {
  for (const level of capabilities().simdAvailable as SimdLevel[]) {
    setSimdLevel(level);
    for (const d of [1, 15, 17, 1023]) {
      const B = 5;
      const p = rand(B * d, d);
      const q = rand(B * d, d + 1);
      const w = rand(B, 3, 0, 2);
      const r = refLoss(p, q, B, (i) => w[i]);
      const got = dsmLoss(p, q, { weight: w });
      t.true(close(got.loss, r.loss, 1e-6), `${level} d=${d} loss`);
      let worst = 0;
      for (let k = 0; k < r.grad.length; k++) worst = Math.max(worst, Math.abs(got.grad![k] - r.grad[k]) / (Math.abs(r.grad[k]) + 1e-6));
      t.true(worst < 1e-5, `${level} d=${d} grad ${worst}`);
    }
  }
  setSimdLevel(capabilities().simdAvailable[0] as SimdLevel);
});

test('named weightings: uniform, sigma2, edm and snr', (t) => {
  const B = 6;
  const d = 10;
  const p = rand(B * d, 7);
  const q = rand(B * d, 8);
  const sigma = rand(B, 9, 0.01, 10);
  const alpha = rand(B, 10, 0.1, 1);
  const sd = 0.5;
  const f32 = (x: number) => Math.fround(x);
  const cases: Array<[string, (i: number) => number, Parameters<typeof dsmLoss>[2]]> = [
    ['uniform', () => 1, { dim: d }],
    ['sigma2', (i) => f32(sigma[i] ** 2), { weight: 'sigma2', sigma }],
    ['edm', (i) => f32((sigma[i] ** 2 + sd * sd) / (sigma[i] * sd) ** 2), { weight: 'edm', sigma }],
    ['snr', (i) => f32(alpha[i] ** 2 / sigma[i] ** 2), { weight: 'snr', sigma, alpha }],
    ['number', () => 2.5, { weight: 2.5, dim: d }],
  ];
  for (const [name, lam, opts] of cases) {
    const r = refLoss(p, q, B, lam);
    t.true(close(dsmLoss(p, q, opts).loss, r.loss, 1e-6), name);
  }
  // Scalar sigma with dim gives the same as the per-sample array filled with it (the array
  // path stores lambda in float32, hence the tolerance).
  const s = 0.75;
  t.true(close(dsmLoss(p, q, { weight: 'edm', sigma: s, dim: d }).loss, dsmLoss(p, q, { weight: 'edm', sigma: new Float32Array(B).fill(s) }).loss, 1e-7));
});

test('sigma2-weighted score loss equals the eps MSE (docs/math.md)', (t) => {
  // score = -eps/sigma, so sigma^2 ||s - s_target||^2 = ||eps_hat - eps||^2.
  const B = 4;
  const d = 50;
  const sigma = rand(B, 1, 0.1, 3);
  const eps = rand(B * d, 2);
  const epsHat = rand(B * d, 3);
  const s = new Float32Array(B * d);
  const sHat = new Float32Array(B * d);
  for (let i = 0; i < B * d; i++) {
    s[i] = -eps[i] / sigma[Math.floor(i / d)];
    sHat[i] = -epsHat[i] / sigma[Math.floor(i / d)];
  }
  const a = dsmLoss(sHat, s, { weight: 'sigma2', sigma }).loss;
  const b = dsmLoss(epsHat, eps, { dim: d }).loss;
  t.true(close(a, b, 1e-5), `${a} vs ${b}`);
});

test('gradient agrees with central finite differences of the loss', (t) => {
  const B = 3;
  const d = 7;
  const p = rand(B * d, 20);
  const q = rand(B * d, 21);
  const w = rand(B, 22, 0.5, 2);
  const { grad } = dsmLoss(p, q, { weight: w });
  const h = 1e-2;
  for (const k of [0, 5, 13, 20]) {
    const pp = p.slice();
    pp[k] += h;
    const up = dsmLoss(pp, q, { weight: w, grad: false }).loss;
    pp[k] -= 2 * h;
    const down = dsmLoss(pp, q, { weight: w, grad: false }).loss;
    const fd = (up - down) / (2 * h);
    t.true(Math.abs(fd - grad![k]) < 1e-4 * (1 + Math.abs(fd)), `k=${k}: ${fd} vs ${grad![k]}`);
  }
});

test.serial('loss bits do not depend on the thread count; gradOut may be the prediction', (t) => {
  const B = 100;
  const d = 3001;
  const p = rand(B * d, 30);
  const q = rand(B * d, 31);
  const w = rand(B, 32, 0, 1);
  setThreads(1);
  const one = dsmLoss(p, q, { weight: w });
  for (const n of [2, 3]) {
    setThreads(n);
    const r = dsmLoss(p, q, { weight: w });
    t.is(r.loss, one.loss, `threads=${n}`);
    t.true(bitsEqual(r.grad!, one.grad!));
  }
  setThreads(capabilities().hardwareThreads);
  const pp = p.slice();
  const r = dsmLoss(pp, q, { weight: w, gradOut: pp });
  t.is(r.grad, pp);
  t.true(bitsEqual(pp, one.grad!));
  t.is(r.loss, one.loss);
});

test('grad: false skips the gradient; async matches sync', async (t) => {
  const p = rand(60, 1);
  const q = rand(60, 2);
  const r = dsmLoss(p, q, { dim: 6, grad: false });
  t.is(r.grad, undefined);
  const a = await dsmLossAsync(p, q, { dim: 6 });
  t.is(a.loss, r.loss);
  t.true(bitsEqual(a.grad!, dsmLoss(p, q, { dim: 6 }).grad!));
});
