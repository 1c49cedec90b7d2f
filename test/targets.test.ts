import test from 'ava';
import {
  capabilities,
  conditionalScore,
  conditionalScoreAsync,
  convert,
  convertAsync,
  perturb,
  perturbAsync,
  randn,
  schedules,
  setSimdLevel,
  velocityTarget,
  velocityTargetAsync,
  type Parameterization,
  type SimdLevel,
} from '../lib/index';
import { at, bitsEqual, maxRelErr, rand, refConvert, rows, type Coef } from './helpers/reference';

const LEVELS = capabilities().simdAvailable as SimdLevel[];
const LENGTHS = [1, 15, 17, 1023];
const best = LEVELS[0];

// Unfused scalar code rounds three times: 4e-7 of the term size bounds every path.
const TOL = 4e-7;

function cases(): Array<{ B: number; d: number; per: boolean }> {
  const out: Array<{ B: number; d: number; per: boolean }> = [];
  for (const d of LENGTHS) {
    out.push({ B: 1, d, per: false });
    out.push({ B: 3, d, per: true });
  }
  out.push({ B: 40000, d: 2, per: true }); // many tiny rows, several parallel chunks
  out.push({ B: 2, d: 70001, per: true }); // rows spanning chunks
  out.push({ B: 5, d: 99999, per: false }); // flat path, several chunks
  return out;
}

test.serial('perturb matches float64 on every SIMD path, odd lengths, scalar and per-sample coefficients', (t) => {
  for (const level of LEVELS) {
    setSimdLevel(level);
    for (const { B, d, per } of cases()) {
      const x0 = rand(B * d, 1 + d);
      const eps = rand(B * d, 2 + d);
      const alpha: Coef = per ? rand(B, 3, 0.1, 1) : 0.7;
      const sigma: Coef = per ? rand(B, 4, 0.001, 10) : 0.3;
      const x0c = x0.slice();
      const epsc = eps.slice();
      const got = perturb(x0, eps, alpha, sigma);
      const ref = rows(B, d, (i, j) => [at(alpha, i) * x0[j] + at(sigma, i) * eps[j], Math.abs(at(alpha, i) * x0[j]) + Math.abs(at(sigma, i) * eps[j])]);
      t.true(maxRelErr(got, ref.value, ref.mag) <= TOL, `${level} B=${B} d=${d}`);
      t.true(bitsEqual(x0, x0c) && bitsEqual(eps, epsc), 'inputs unchanged');
    }
  }
  setSimdLevel(best);
});

test.serial('conditionalScore matches float64 on every SIMD path, including tiny sigma', (t) => {
  for (const level of LEVELS) {
    setSimdLevel(level);
    for (const { B, d, per } of cases()) {
      const x = rand(B * d, 5 + d);
      const x0 = rand(B * d, 6 + d);
      const alpha: Coef = per ? rand(B, 7, 0.1, 1) : 0.9;
      const sigma: Coef = per ? rand(B, 8, 0.002, 80) : 0.002;
      const got = conditionalScore(x, x0, alpha, sigma);
      const ref = rows(B, d, (i, j) => {
        const s2 = at(sigma, i) ** 2;
        return [-(x[j] - at(alpha, i) * x0[j]) / s2, (Math.abs(x[j]) + Math.abs(at(alpha, i) * x0[j])) / s2];
      });
      t.true(maxRelErr(got, ref.value, ref.mag) <= TOL, `${level} B=${B} d=${d}`);
    }
  }
  setSimdLevel(best);
});

test.serial('conditionalScore of a near-clean point keeps the eps/sigma precision (fused difference)', (t) => {
  // x = alpha x0 + sigma eps with sigma = 1e-3: the score is -eps/sigma, and x - alpha x0
  // cancels nearly all of x. The fused form's error is set by |x|, not by alpha*x0 rounding
  // first and then cancelling.
  const d = 4096;
  const x0 = rand(d, 9, -1, 1);
  const eps = rand(d, 10, -1, 1);
  const sigma = 1e-3;
  const x = perturb(x0, eps, 1, sigma);
  const got = conditionalScore(x, x0, 1, sigma);
  // Reference from the float32 x actually produced (so only conditionalScore's error counts).
  let worst = 0;
  for (let k = 0; k < d; k++) {
    const want = -(x[k] - x0[k]) / sigma ** 2;
    worst = Math.max(worst, Math.abs(got[k] - want) / (Math.abs(x[k]) / sigma ** 2));
  }
  t.true(worst <= 2 ** -23, `worst ${worst}`);
});

test.serial('velocityTarget matches float64 and the rectified-flow special case eps - x0', (t) => {
  for (const level of LEVELS) {
    setSimdLevel(level);
    for (const { B, d, per } of cases()) {
      const x0 = rand(B * d, 11 + d);
      const eps = rand(B * d, 12 + d);
      const da: Coef = per ? rand(B, 13, -3, 3) : -1;
      const ds: Coef = per ? rand(B, 14, -3, 3) : 1;
      const got = velocityTarget(x0, eps, da, ds);
      const ref = rows(B, d, (i, j) => [at(da, i) * x0[j] + at(ds, i) * eps[j], Math.abs(at(da, i) * x0[j]) + Math.abs(at(ds, i) * eps[j])]);
      t.true(maxRelErr(got, ref.value, ref.mag) <= TOL, `${level} B=${B} d=${d}`);
    }
  }
  setSimdLevel(best);
});

const PARAMS: Parameterization[] = ['eps', 'x0', 'v', 'score'];

test.serial('convert follows the docs/math.md table for all 16 pairs on every SIMD path', (t) => {
  for (const level of LEVELS) {
    setSimdLevel(level);
    for (const d of [1, 17, 1023]) {
      const B = 4;
      const m = rand(B * d, 20 + d);
      const x = rand(B * d, 21 + d);
      const alpha = rand(B, 22, 0.2, 1);
      const sigma = rand(B, 23, 0.05, 5);
      for (const from of PARAMS) {
        for (const to of PARAMS) {
          const got = convert(from, to, m, x, alpha, sigma);
          // Magnitude: the same formula applied to |m| and |x| with absolute coefficients bounds
          // the size of the terms; use the sum of the separate contributions of m and x.
          const ref = rows(B, d, (i, j) => {
            const a = alpha[i];
            const s = sigma[i];
            const fm = Math.abs(refConvert(from, to, m[j], 0, a, s));
            const fx = Math.abs(refConvert(from, to, 0, x[j], a, s));
            return [refConvert(from, to, m[j], x[j], a, s), fm + fx];
          });
          t.true(maxRelErr(got, ref.value, ref.mag) <= 1e-6, `${level} ${from}->${to} d=${d}`);
        }
      }
    }
  }
  setSimdLevel(best);
});

test('convert round trips and scalar coefficients equal the same per-sample values', (t) => {
  const B = 8;
  const d = 33;
  const m = rand(B * d, 30);
  const x = rand(B * d, 31);
  for (const from of PARAMS) {
    for (const to of PARAMS) {
      const fwd = convert(from, to, m, x, 0.75, 0.625);
      const back = convert(to, from, fwd, x, 0.75, 0.625);
      t.true(maxRelErr(back, m, new Float64Array(m.length).fill(1)) < 1e-5, `${from}->${to}->${from}`);
      const perSample = convert(from, to, m, x, new Float32Array(B).fill(0.75), new Float32Array(B).fill(0.625));
      t.true(bitsEqual(fwd, perSample), `${from}->${to} scalar vs per-sample`);
    }
  }
});

test('out may alias an elementwise input exactly (in place)', (t) => {
  const B = 3;
  const d = 17;
  const x0 = rand(B * d, 40);
  const eps = rand(B * d, 41);
  const sigma = rand(B, 42, 0.1, 1);
  const want = perturb(x0, eps, 0.5, sigma);
  const inPlace = x0.slice();
  const ret = perturb(inPlace, eps, 0.5, sigma, inPlace);
  t.is(ret, inPlace);
  t.true(bitsEqual(inPlace, want));
  const eps2 = eps.slice();
  perturb(x0, eps2, 0.5, sigma, eps2);
  t.true(bitsEqual(eps2, want));

  const x = rand(B * d, 43);
  const wantScore = conditionalScore(x, x0, 0.5, sigma);
  const xs = x.slice();
  conditionalScore(xs, x0, 0.5, sigma, xs);
  t.true(bitsEqual(xs, wantScore));

  const wantConv = convert('eps', 'x0', eps, x, 0.5, sigma);
  const e3 = eps.slice();
  convert('eps', 'x0', e3, x, 0.5, sigma, e3);
  t.true(bitsEqual(e3, wantConv));
});

test('out given by the caller is written and returned; a view into a larger buffer is respected', (t) => {
  const d = 15;
  const big = new Float32Array(d + 10).fill(-7);
  const out = big.subarray(5, 5 + d);
  const x0 = rand(d, 50);
  const eps = rand(d, 51);
  const ret = perturb(x0, eps, 1, 2, out);
  t.is(ret, out);
  t.true(bitsEqual(out, perturb(x0, eps, 1, 2)));
  t.true(big.subarray(0, 5).every((v) => v === -7) && big.subarray(5 + d).every((v) => v === -7), 'guard regions untouched');
});

test('async forms give the same bits as the sync forms', async (t) => {
  const B = 64;
  const d = 1023;
  const x0 = rand(B * d, 60);
  const eps = rand(B * d, 61);
  const a = rand(B, 62, 0.1, 1);
  const s = rand(B, 63, 0.1, 2);
  const [p, c, v, k] = await Promise.all([
    perturbAsync(x0, eps, a, s),
    conditionalScoreAsync(x0, eps, a, s),
    velocityTargetAsync(x0, eps, a, s),
    convertAsync('v', 'score', x0, eps, a, s),
  ]);
  t.true(bitsEqual(p, perturb(x0, eps, a, s)));
  t.true(bitsEqual(c, conditionalScore(x0, eps, a, s)));
  t.true(bitsEqual(v, velocityTarget(x0, eps, a, s)));
  t.true(bitsEqual(k, convert('v', 'score', x0, eps, a, s)));
});

test('empty inputs are fine', (t) => {
  const e = new Float32Array(0);
  t.is(perturb(e, e, 1, 1).length, 0);
  t.is(conditionalScore(e, e, new Float32Array(0), new Float32Array(0)).length, 0);
});

test('per-sample coefficients as Float64Array or plain arrays equal the same values as Float32Array (rounded to float32)', async (t) => {
  const B = 5, d = 7;
  const x0 = randn(B * d, { seed: 1 });
  const eps = randn(B * d, { seed: 2 });
  const s64 = Float64Array.from({ length: B }, (_, i) => 0.1 + Math.PI * i);  // not exact in float32
  const a64 = Float64Array.from({ length: B }, (_, i) => 1 / (i + 3));
  const want = perturb(x0, eps, Float32Array.from(a64), Float32Array.from(s64));
  const same = (a: Float32Array) => a.length === want.length && a.every((v, i) => Object.is(v, want[i]));
  t.true(same(perturb(x0, eps, a64, s64)));
  t.true(same(perturb(x0, eps, Array.from(a64), Array.from(s64))));
  t.true(same(await perturbAsync(x0, eps, a64, s64)));
  // schedules.karrasSigmas returns a Float64Array: usable as per-sample sigma directly
  const ks = schedules.karrasSigmas(B, { appendZero: false });
  t.true(ks instanceof Float64Array);
  const sc = conditionalScore(perturb(x0, eps, 1, ks), x0, 1, ks);
  t.is(sc.length, B * d);
  // the caller's arrays are not changed
  t.is(s64[1], 0.1 + Math.PI);
});
