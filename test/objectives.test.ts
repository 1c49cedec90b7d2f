// Score-matching objectives (lib/objectives.ts, docs/math.md section 2).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { datasets, objectives, poisson, randn, ReferenceSet, ScorefieldAbortError, ScorefieldDenoiserError, type ScoreModel } from '../lib/index';

const mixture = datasets.gmm({ n: 1500, seed: 1 });
const data = new ReferenceSet(mixture.data, 2);

/** s(x) = A x + b with A = [[a, c], [c, a]] and b = (b1, b2). */
const linear = (a: number, c: number, b1: number, b2: number): ScoreModel => (x) => {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i += 2) {
    out[i] = a * x[i] + c * x[i + 1] + b1;
    out[i + 1] = c * x[i] + a * x[i + 1] + b2;
  }
  return out;
};

test('CSM - SM equals the model-independent gap within three standard errors, for many models', async (t) => {
  const models: Array<[string, ScoreModel]> = [
    ['zero', linear(0, 0, 0, 0)],
    ['A=-I', linear(-1, 0, 0, 0)],
    ['A=-3I, b', linear(-3, 0.5, -1, 0.4)],
    ['A=+2I', linear(2, -0.3, 1, 1)],
    ['tanh', (x) => x.map((v) => -4 * Math.tanh(2 * v))],
  ];
  for (const [alpha, sigma] of [[1, 0.3], [0.8, 0.1], [1, 2]]) {
    let gapValue: number | undefined;
    for (const [name, model] of models) {
      const r = await objectives.evaluate(model, data, { sigma, alpha, samples: 6000, seed: 11 });
      const z = r.difference.value / r.difference.stderr;
      t.true(Math.abs(z) < 3, `${name} alpha=${alpha} sigma=${sigma}: CSM - SM - gap = ${r.difference.value} (${z.toFixed(2)} stderr)`);
      t.true(r.csm.value >= r.sm.value, `${name}: CSM >= SM`);
      // the gap is the same for every model (it depends only on the draws)
      if (gapValue === undefined) gapValue = r.gap.value;
      t.is(r.gap.value, gapValue);
    }
  }
});

test('the identity also holds in field form for the Poisson kernel', async (t) => {
  for (const model of [linear(0, 0, 0, 0), linear(3, 0, 0.2, 0), (x: Float32Array) => x.map((v) => 2 * Math.sin(v))]) {
    const r = await objectives.evaluate(model, data, { sigma: 0.4, kernel: poisson({ D: 4 }), samples: 5000, seed: 5 });
    t.true(Math.abs(r.difference.value) < 3 * r.difference.stderr, `${r.difference.value} +- ${r.difference.stderr}`);
    t.true(r.gap.value > 0);
  }
});

test("Jensen on every draw: E_{x0|x} ||grad log p(x|x0) - s||^2 = SM_x + gap_x >= SM_x (naive float64 posterior)", async (t) => {
  const small = new ReferenceSet(mixture.data.subarray(0, 2 * 300), 2);
  const model = linear(-2, 0.3, 0.1, -0.2);
  const sigma = 0.25, alpha = 0.9;
  const r = await objectives.evaluate(model, small, { sigma, alpha, samples: 200, seed: 4, terms: true });
  const Y = small.rows(Array.from({ length: 300 }, (_, j) => j));
  const s = model(r.x!, sigma) as Float32Array;
  let worst = 0;
  for (let i = 0; i < 200; i++) {
    const x = [r.x![2 * i], r.x![2 * i + 1]];
    const l = Array.from({ length: 300 }, (_, j) => -((x[0] - alpha * Y[2 * j]) ** 2 + (x[1] - alpha * Y[2 * j + 1]) ** 2) / (2 * sigma * sigma));
    const mx = Math.max(...l);
    const w = l.map((v) => Math.exp(v - mx));
    const W = w.reduce((a, b) => a + b, 0);
    let conditional = 0;
    for (let j = 0; j < 300; j++) {
      const c0 = -(x[0] - alpha * Y[2 * j]) / sigma ** 2, c1 = -(x[1] - alpha * Y[2 * j + 1]) / sigma ** 2;
      conditional += (w[j] / W) * ((c0 - s[2 * i]) ** 2 + (c1 - s[2 * i + 1]) ** 2);
    }
    const smx = r.sm.terms![i], gapx = r.gap.terms![i];
    t.true(conditional >= smx * (1 - 1e-6), `draw ${i}: ${conditional} < ${smx}`);
    worst = Math.max(worst, Math.abs(conditional - smx - gapx) / conditional);
  }
  t.log(`worst relative error of SM_x + gap_x against the naive conditional CSM: ${worst.toExponential(2)}`);
  t.true(worst < 1e-3, String(worst));
});

test('the same seed gives csm and sm the same draws; the batch size changes nothing', async (t) => {
  const model = linear(-1, 0, 0.3, 0);
  const opts = { sigma: 0.2, samples: 777, seed: 99n, terms: true };
  const all = await objectives.evaluate(model, data, opts);
  const c = await objectives.csm(model, data, { ...opts, batch: 50 });
  const s = await objectives.sm(model, data, { ...opts, batch: 7 });
  const g = await objectives.gap(data, { ...opts, batch: 1000 });
  t.deepEqual(c.terms, all.csm.terms);
  t.deepEqual(s.terms, all.sm.terms);
  t.deepEqual(g.terms, all.gap.terms);
  const other = await objectives.csm(model, data, { ...opts, seed: 100n });
  t.notDeepEqual(other.terms, c.terms);
});

test('Hyvarinen: the exact divergence of the empirical score agrees with sliced finite differences', async (t) => {
  for (const [d, n, sigma] of [[2, 500, 0.3], [16, 800, 0.5], [64, 1000, 2]] as const) {
    const ref = new ReferenceSet(d === 2 ? mixture.data.subarray(0, 2 * n) : randn(n * d, { seed: d, dim: d }), d);
    const blackBox: ScoreModel = (x, s) => ref.estimate(x, { sigma: s, outputs: ['score'] }).score;
    const opts = { sigma, samples: 1500, seed: 2, terms: true };
    const exact = await objectives.hyvarinen(ref, ref, { ...opts, method: 'exact-empirical' });
    const fd = await objectives.hyvarinen(blackBox, ref, { ...opts, method: 'sliced-fd', projections: 4 });
    const diff = exact.terms!.map((v, i) => v - fd.terms![i]);
    const m = diff.reduce((a, b) => a + b, 0) / diff.length;
    const se = Math.sqrt(diff.reduce((a, b) => a + (b - m) ** 2, 0) / (diff.length - 1) / diff.length);
    t.log(`d=${d}: exact ${exact.value.toFixed(3)} +- ${exact.stderr.toFixed(3)}, sliced FD ${fd.value.toFixed(3)} +- ${fd.stderr.toFixed(3)}`);
    t.true(Math.abs(m) < 3 * se + 1e-3 * Math.abs(exact.value), `d=${d}: ${m} +- ${se}`);
  }
});

test('the SM estimate through the ratio estimator is biased, and the bias shrinks like 1/N (Gaussian data, exact score)', async (t) => {
  // p0 = N(0, I): p_sigma = N(0, (1 + sigma^2) I), whose score -x / (1 + sigma^2) is the model,
  // so the true SM is 0 and the estimate over a reference set of N points is pure bias.
  const d = 2, sigma = 0.5;
  const draws = new ReferenceSet(randn(20000 * d, { seed: 100, dim: d }), d);
  const exact: ScoreModel = (x) => x.map((v) => -v / (1 + sigma * sigma));
  const bias: number[] = [];
  for (const N of [16, 64, 256]) {
    let mean = 0;
    for (let r = 0; r < 6; r++) {
      const reference = new ReferenceSet(randn(N * d, { seed: 1000 + r, dim: d }), d);
      mean += (await objectives.sm(exact, draws, { sigma, samples: 3000, seed: 7, reference })).value / 6;
    }
    bias.push(mean);
  }
  t.log(`bias at N = 16, 64, 256: ${bias.map((b) => b.toFixed(4)).join(', ')}`);
  t.true(bias[0] > bias[1] && bias[1] > bias[2] && bias[2] > 0);
  // 1/N: each 4x larger set cuts it by about 4 (between 2.5 and 6)
  for (const k of [0, 1]) t.true(bias[k] / bias[k + 1] > 2.5 && bias[k] / bias[k + 1] < 6, `${bias[k] / bias[k + 1]}`);
});

test('bad models and inputs get coded errors; abort and progress work', async (t) => {
  const opts = { sigma: 0.5, samples: 100, seed: 1 };
  const cases: Array<[string, ScoreModel]> = [
    ['short', (x) => x.subarray(1)],
    ['NaN', (x) => x.map((v, i) => (i === 5 ? NaN : v))],
    ['not an array', () => [1, 2] as unknown as Float32Array],
    ['throws', () => {
      throw new Error('boom');
    }],
    ['rejects', async () => Promise.reject(new Error('async boom'))],
  ];
  for (const [name, model] of cases) {
    const e = await t.throwsAsync(objectives.csm(model, data, opts), { instanceOf: ScorefieldDenoiserError }, name);
    t.is(e?.code, 'ERR_SCOREFIELD_DENOISER', name);
  }
  const thrown = await t.throwsAsync(objectives.sm(cases[3][1], data, opts));
  t.is((thrown?.cause as Error).message, 'boom');
  await t.throwsAsync(objectives.csm(linear(0, 0, 0, 0), mixture.data as never, opts), { code: 'ERR_SCOREFIELD_TYPE', message: /ReferenceSet for data/ });
  await t.throwsAsync(objectives.csm(linear(0, 0, 0, 0), data, { ...opts, samples: 0 }), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(objectives.csm(linear(0, 0, 0, 0), data, { ...opts, sigma: -1 }), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(objectives.sm(linear(0, 0, 0, 0), data, { ...opts, reference: new ReferenceSet(new Float32Array(9), 3) }), { code: 'ERR_SCOREFIELD_SHAPE' });
  await t.throwsAsync(objectives.gap(data, { ...opts, alpha: 0.5, kernel: poisson() }), { code: 'ERR_SCOREFIELD_UNSUPPORTED' });
  await t.throwsAsync(objectives.hyvarinen(linear(0, 0, 0, 0), data, { ...opts, method: 'exact-empirical' }), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(objectives.hyvarinen(data, data, { ...opts, method: 'exact' as never }), { code: 'ERR_SCOREFIELD_TYPE' });
  const controller = new AbortController();
  const seen: number[] = [];
  await t.throwsAsync(
    objectives.evaluate(linear(-1, 0, 0, 0), data, {
      ...opts,
      samples: 1000,
      batch: 100,
      signal: controller.signal,
      onProgress: (done, total) => {
        seen.push(done);
        t.is(total, 1000);
        if (done === 300) controller.abort();
      },
    }),
    { instanceOf: ScorefieldAbortError },
  );
  t.deepEqual(seen, [100, 200, 300]);
});

test('examples/objectives.ts runs and shows the constant gap and the shrinking bias', (t) => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'examples', 'objectives.ts')], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  const gaps = [...r.stdout.matchAll(/^\s+-?\d+\s+-?\d\.\d\s+\S+ \+- \S+\s+\S+ \+- \S+\s+(\S+)/gm)].map((m) => Number(m[1]));
  t.is(gaps.length, 5);
  t.true(Math.max(...gaps) - Math.min(...gaps) < 0.2, `CSM - SM across models: ${gaps}`);
  const bias = [...r.stdout.matchAll(/^\s+(\d+)\s+(\d\.\d+)\s+\d+\.\d$/gm)].map((m) => Number(m[2]));
  t.is(bias.length, 4);
  for (let k = 0; k + 1 < bias.length; k++) t.true(bias[k] > bias[k + 1]);
});
