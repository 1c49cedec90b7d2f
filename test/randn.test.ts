import test from 'ava';
import { capabilities, randn, randnAsync, setSimdLevel, setThreads, type SimdLevel } from '../lib/index';
import { bitsEqual } from './helpers/reference';

test('sample i depends only on (seed, stream, i): batch size and offset do not change it', (t) => {
  const d = 37;
  const all = randn(new Float32Array(10 * d), { seed: 123, dim: d });
  for (let i = 0; i < 10; i++) {
    const one = randn(new Float32Array(d), { seed: 123, dim: d, offset: i });
    t.true(bitsEqual(one, all.subarray(i * d, (i + 1) * d)), `row ${i}`);
  }
  const tail = randn(new Float32Array(4 * d), { seed: 123, dim: d, offset: 6 });
  t.true(bitsEqual(tail, all.subarray(6 * d)));
});

test.serial('noise is identical for every thread count and SIMD level', (t) => {
  const d = 1001;
  const B = 200; // several chunks with rows crossing them
  const ref = randn(new Float32Array(B * d), { seed: 5n, stream: 2, dim: d });
  for (const n of [1, 2, 3]) {
    setThreads(n);
    t.true(bitsEqual(randn(new Float32Array(B * d), { seed: 5n, stream: 2, dim: d }), ref), `threads=${n}`);
  }
  setThreads(capabilities().hardwareThreads);
  for (const level of capabilities().simdAvailable as SimdLevel[]) {
    setSimdLevel(level);
    t.true(bitsEqual(randn(new Float32Array(B * d), { seed: 5n, stream: 2, dim: d }), ref), level);
  }
  setSimdLevel(capabilities().simdAvailable[0] as SimdLevel);
});

test('seeds and streams give different noise; number and bigint seeds agree', (t) => {
  const a = randn(64, { seed: 1 });
  t.false(bitsEqual(a, randn(64, { seed: 2 })));
  t.false(bitsEqual(a, randn(64, { seed: 1, stream: 1 })));
  t.true(bitsEqual(a, randn(64, { seed: 1n })));
  // High seed bits matter (the key is 64-bit).
  t.false(bitsEqual(randn(64, { seed: 2n ** 40n }), randn(64, { seed: 2n ** 41n })));
  t.false(bitsEqual(randn(64, { seed: 2n ** 63n }), randn(64, { seed: 0n })));
});

// Standard normal CDF via erf (Abramowitz-Stegun 7.1.26 is too coarse; use a series/continued fraction).
function normalCdf(x: number): number {
  // erfc with a Chebyshev fit (Numerical Recipes erfcc), relative error < 1.2e-7.
  const z = Math.abs(x) / Math.SQRT2;
  const tt = 1 / (1 + 0.5 * z);
  const r =
    tt *
    Math.exp(
      -z * z -
        1.26551223 +
        tt * (1.00002368 + tt * (0.37409196 + tt * (0.09678418 + tt * (-0.18628806 + tt * (0.27886807 + tt * (-1.13520398 + tt * (1.48851587 + tt * (-0.82215223 + tt * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r / 2 : r / 2;
}

test('draws follow N(0, 1): moments and a Kolmogorov-Smirnov statistic at a fixed seed', (t) => {
  const n = 200001; // odd: the last value comes from half a pair
  const z = randn(n, { seed: 2024 });
  let mean = 0;
  for (const v of z) mean += v;
  mean /= n;
  let m2 = 0;
  let m4 = 0;
  for (const v of z) {
    m2 += (v - mean) ** 2;
    m4 += (v - mean) ** 4;
  }
  m2 /= n;
  m4 /= n;
  t.true(Math.abs(mean) < 5 * Math.sqrt(1 / n), `mean ${mean}`);
  t.true(Math.abs(m2 - 1) < 5 * Math.sqrt(2 / n), `variance ${m2}`);
  t.true(Math.abs(m4 / (m2 * m2) - 3) < 5 * Math.sqrt(24 / n), `kurtosis ${m4 / (m2 * m2)}`);
  const sorted = Float64Array.from(z).sort();
  let ks = 0;
  for (let i = 0; i < n; i++) {
    const f = normalCdf(sorted[i]);
    ks = Math.max(ks, Math.abs(f - i / n), Math.abs(f - (i + 1) / n));
  }
  // The 0.1% critical value is 1.95/sqrt(n).
  t.true(ks < 1.95 / Math.sqrt(n), `KS ${ks}`);
});

test('randnAsync equals randn and returns the buffer it filled', async (t) => {
  const out = new Float32Array(3000);
  const ret = await randnAsync(out, { seed: 9, dim: 30 });
  t.is(ret, out);
  t.true(bitsEqual(out, randn(3000, { seed: 9, dim: 30 })));
});
