// The fused pass's bf16 screen (docs/numerics.md, "The bf16 screen"): it may only change which
// float32 dot products are computed, never a bit of a result. Every output is compared bit for
// bit with the screen on and off, on real MNIST digits (held-out, training and jittered
// queries, a full block and a padded one), a clustered set far from the origin, pruned and
// full-scan calls and shards, across sigma; where the CPU has the screen the test also checks
// that it skipped rows (so it fails if the screen silently stopped running), and where it has
// not, that it never ran.
import test from 'ava';
import { capabilities, datasets, randn, ReferenceSet, setPruning, setScreening, setThreads, type EstimateOutput } from '../lib/index';
import { noised } from './helpers/estimator-ref';

const d = 784;
const mnist = datasets.mnist({ limit: 4200 });
const N = 4000;
const ref = new ReferenceSet(mnist.data.slice(0, N * d), d);
const held = mnist.data.slice(N * d, (N + 64) * d);
const trainRows = new Float32Array(37 * d);
for (let i = 0; i < 37; i++) trainRows.set(mnist.data.subarray((i * 101 + 5) * d, (i * 101 + 6) * d), i * d);

const OUTPUTS: EstimateOutput[] = ['score', 'logDensity', 'ess', 'traceCov'];
const SIGMAS = [0.3, 0.5, 0.7, 1, 1.5, 2, 5];

function bitsDiffer(a: Float32Array, b: Float32Array): number {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length), v = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let n = 0;
  for (let i = 0; i < u.length; i++) if (u[i] !== v[i]) n++;
  return n;
}

/** Both runs of one call; returns the differing bits per output and the screen's counters. */
function onOff(set: ReferenceSet, x: Float32Array, sigma: number) {
  const was = setScreening(false);
  try {
    const off = set.estimateWithStats(x, { sigma, outputs: OUTPUTS });
    setScreening(true);
    const on = set.estimateWithStats(x, { sigma, outputs: OUTPUTS });
    const diff: Record<string, number> = {};
    for (const o of OUTPUTS) diff[o] = bitsDiffer((off.result as Record<string, Float32Array>)[o], (on.result as Record<string, Float32Array>)[o]);
    return { diff, on, off };
  } finally {
    setScreening(was);
  }
}

const zero = Object.fromEntries(OUTPUTS.map((o) => [o, 0]));

test('{ screen: false } builds the set without the bf16 copy: less memory, never screened, the same bits', (t) => {
  const data = mnist.data.slice(0, 1500 * d);
  const withCopy = new ReferenceSet(data, d);
  const without = new ReferenceSet(data, d, { screen: false });
  if (capabilities().bf16Screen) t.is(withCopy.byteLength - without.byteLength, 2 * 1500 * d + 2 * 4 * 1500);
  else t.is(withCopy.byteLength, without.byteLength);
  const x = noised(held, 0.5, 31);
  const a = withCopy.estimateWithStats(x, { sigma: 0.5, outputs: OUTPUTS });
  const b = without.estimateWithStats(x, { sigma: 0.5, outputs: OUTPUTS });
  t.is(b.screenedRows, 0);
  if (capabilities().bf16Screen) t.true(a.screenSkippedRows > 0);
  for (const o of OUTPUTS) t.is(bitsDiffer((a.result as Record<string, Float32Array>)[o], (b.result as Record<string, Float32Array>)[o]), 0, o);
  t.throws(() => new ReferenceSet(data, d, { screen: 1 as unknown as boolean }), { code: 'ERR_SCOREFIELD_TYPE', message: /options\.screen/ });
});

test('setScreening returns the previous setting and rejects a non-boolean', (t) => {
  const was = setScreening(false);
  t.is(typeof was, 'boolean');
  t.is(setScreening(true), false);
  t.is(setScreening(was), true);
  t.throws(() => setScreening(1 as unknown as boolean), { code: 'ERR_SCOREFIELD_TYPE', message: /boolean/ });
  t.is(typeof capabilities().bf16Screen, 'boolean');
});

for (const pruning of [false, true]) {
  test.serial(`MNIST, ${pruning ? 'pruned' : 'full scan'}: the same bits with the screen on and off at every sigma`, (t) => {
    const wasP = setPruning(pruning);
    try {
      let skipped = 0, screened = 0;
      const kinds: [string, (s: number) => Float32Array][] = [
        ['held-out x64', (s) => noised(held, s, 11)],
        ['training x37', (s) => noised(trainRows, s, 12)],
        ['training+jitter x37', (s) => noised(trainRows, s, 13, 1e-3)],
      ];
      for (const [name, make] of kinds)
        for (const sigma of SIGMAS) {
          const { diff, on, off } = onOff(ref, make(sigma), sigma);
          t.deepEqual(diff, zero, `${name} sigma ${sigma}`);
          t.is(off.screenedRows, 0, 'the screen does not run when turned off');
          skipped += on.screenSkippedRows;
          screened += on.screenedRows;
          t.true(on.screenSkippedRows <= on.screenedRows);
        }
      if (capabilities().bf16Screen) {
        // it ran, and skipped most rows' float32 products somewhere in the sweep (sigma 0.5-1)
        t.true(screened > 0 && skipped > 0.3 * screened, `screened ${screened}, skipped ${skipped}`);
      } else {
        t.is(screened, 0);
      }
    } finally {
      setPruning(wasP);
    }
  });
}

test.serial('a clustered set far from the origin, shards and thread counts: the same bits', (t) => {
  const n = 3000, dim = 256;
  const centres = randn(6 * dim, { seed: 5 });
  const z = randn(n * dim, { seed: 6 });
  const Y = new Float32Array(n * dim);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < dim; k++) Y[i * dim + k] = 40 + 2 * centres[(i % 6) * dim + k] + 0.3 * (1 + (i % 3)) * z[i * dim + k];
  const set = new ReferenceSet(Y, dim);
  const base = Y.slice(0, 48 * dim);
  for (const sigma of [0.2, 0.5, 1, 3]) {
    const x = noised(base, sigma, 21);
    t.deepEqual(onOff(set, x, sigma).diff, zero, `sigma ${sigma}`);
    // shards: each partial state the same bits
    for (const [start, end] of [[0, 1100], [1100, 3000]]) {
      const wasS = setScreening(false);
      const a = set.estimatePartial(x, { sigma, start, end });
      setScreening(true);
      const b = set.estimatePartial(x, { sigma, start, end });
      setScreening(wasS);
      for (const key of Object.keys(a) as (keyof typeof a)[]) {
        const u = a[key], v = b[key];
        if (u instanceof Float64Array && v instanceof Float64Array) {
          t.deepEqual(Array.from(v), Array.from(u), `shard ${start}-${end} ${String(key)} sigma ${sigma}`);
        }
      }
    }
  }
  // small norms: the float GEMM's modelled error stays under the tolerance, so no pair can be
  // recomputed and the weight floor alone decides which rows the screen skips
  const small = new Float32Array(n * dim);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < dim; k++) small[i * dim + k] = 0.01 * centres[(i % 6) * dim + k] + 0.0005 * z[i * dim + k];
  const smallSet = new ReferenceSet(small, dim);
  const wasP = setPruning(false);
  try {
    // queries from one cluster (rows 0, 6, 12, ...): the other five carry no weight
    const q0 = new Float32Array(40 * dim);
    for (let i = 0; i < 40; i++) q0.set(small.subarray(6 * i * dim, (6 * i + 1) * dim), i * dim);
    for (const sigma of [0.02]) {
      const r = onOff(smallSet, noised(q0, sigma, 23), sigma);
      t.deepEqual(r.diff, zero, `small norms, sigma ${sigma}`);
      t.is(r.on.refined, 0, 'no pair recomputed');
      if (capabilities().bf16Screen) t.true(r.on.screenSkippedRows > 0);
    }
  } finally {
    setPruning(wasP);
  }
  // the screen's decisions depend on the request alone, not on the thread count
  const x = noised(base, 0.5, 22);
  const threads = capabilities().threads;
  try {
    setThreads(1);
    const one = set.estimate(x, { sigma: 0.5, outputs: ['score'] }).score;
    setThreads(3);
    const three = set.estimate(x, { sigma: 0.5, outputs: ['score'] }).score;
    t.is(bitsDiffer(one, three), 0);
  } finally {
    setThreads(threads);
  }
});
