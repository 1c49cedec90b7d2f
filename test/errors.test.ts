// The bad-input table: every case throws its coded error of the documented class, the
// message names the argument, nothing crashes and no input changes.
import test from 'ava';
import * as sf from '../lib/index';
import { bitsEqual, rand } from './helpers/reference';

type Case = [name: string, call: () => unknown, code: string, cls: new (...a: never[]) => Error, mentions: string];

function detached(n: number): Float32Array {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

const d = 8;
const B = 4;
const x0 = rand(B * d, 1);
const eps = rand(B * d, 2);
const sig = rand(B, 3, 0.1, 1);
const snapshot = [x0, eps, sig].map((a) => a.slice());
const any = (v: unknown) => v as never;

const cases: Case[] = [
  ['plain array x0', () => sf.perturb(any([1, 2]), eps, 1, 1), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'x0'],
  ['Float64Array eps', () => sf.perturb(x0, any(new Float64Array(B * d)), 1, 1), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'eps'],
  ['string sigma', () => sf.perturb(x0, eps, 1, any('0.5')), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'sigma'],
  ['plain array sigma of strings', () => sf.perturb(x0, eps, 1, any(['0.5'])), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'sigma[0]'],
  ['Float64Array sigma of the wrong length', () => sf.perturb(x0, eps, 1, new Float64Array(B + 1).fill(1)), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'sigma'],
  ['Float64Array sigma beyond float32', () => sf.perturb(x0, eps, 1, new Float64Array(B).fill(1e300)), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma[0]'],
  ['eps length mismatch', () => sf.perturb(x0, eps.subarray(1), 1, 1), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'eps'],
  ['out length mismatch', () => sf.perturb(x0, eps, 1, 1, new Float32Array(3)), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'out'],
  ['alpha and sigma disagree on B', () => sf.perturb(x0, eps, new Float32Array(2).fill(1), sig), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'sigma'],
  ['B does not divide the data', () => sf.perturb(x0, eps, 1, new Float32Array(3).fill(1)), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'divisible'],
  ['NaN sigma', () => sf.perturb(x0, eps, 1, Number.NaN), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma'],
  ['negative sigma', () => sf.perturb(x0, eps, 1, -1), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma'],
  ['Infinity alpha', () => sf.perturb(x0, eps, Number.POSITIVE_INFINITY, 1), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'alpha'],
  ['zero sigma in conditionalScore', () => sf.conditionalScore(x0, eps, 1, 0), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma'],
  ['NaN inside per-sample sigma', () => sf.conditionalScore(x0, eps, 1, Float32Array.of(1, 1, Number.NaN, 1)), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma[2]'],
  ['non-positive per-sample sigma', () => sf.conditionalScore(x0, eps, 1, Float32Array.of(1, 0, 1, 1)), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'sigma[1]'],
  ['unknown parameterisation', () => sf.convert(any('noise'), 'x0', x0, eps, 1, 1), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'from'],
  ['convert with alpha 0', () => sf.convert('eps', 'x0', x0, eps, 0, 1), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'alpha'],
  ['detached x0', () => sf.perturb(detached(B * d), eps, 1, 1), 'ERR_SCOREFIELD_DETACHED', sf.ScorefieldShapeError, 'x0'],
  ['detached out', () => sf.perturb(x0, eps, 1, 1, detached(B * d)), 'ERR_SCOREFIELD_DETACHED', sf.ScorefieldShapeError, 'out'],
  ['out partially overlapping x0', () => sf.perturb(x0.subarray(0, 16), x0.subarray(0, 16), 1, 1, new Float32Array(x0.buffer, 4, 16)), 'ERR_SCOREFIELD_ALIAS', sf.ScorefieldShapeError, 'out'],
  ['out overlapping per-sample sigma', () => { const buf = new Float32Array(B * d + B); return sf.perturb(x0, eps, 1, buf.subarray(B * d - 2, B * d - 2 + B).fill(1), buf.subarray(0, B * d)); }, 'ERR_SCOREFIELD_ALIAS', sf.ScorefieldShapeError, 'sigma'],
  ['randn without seed', () => sf.randn(new Float32Array(4), any({})), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'options.seed'],
  ['randn negative seed', () => sf.randn(new Float32Array(4), { seed: -1 }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.seed'],
  ['randn fractional seed', () => sf.randn(new Float32Array(4), { seed: 1.5 }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.seed'],
  ['randn seed above 2^64', () => sf.randn(new Float32Array(4), { seed: 2n ** 64n }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.seed'],
  ['randn dim not dividing', () => sf.randn(new Float32Array(10), { seed: 1, dim: 3 }), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'options.dim'],
  ['randn dim of 2^53 (B*d overflow)', () => sf.randn(new Float32Array(4), { seed: 1, dim: 2 ** 53 }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.dim'],
  ['randn offset + B past 2^53', () => sf.randn(new Float32Array(4), { seed: 1, dim: 1, offset: Number.MAX_SAFE_INTEGER }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.offset'],
  ['randn stream too large', () => sf.randn(new Float32Array(4), { seed: 1, stream: 2 ** 32 }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.stream'],
  ['dsmLoss without a batch size', () => sf.dsmLoss(x0, eps), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'options.dim'],
  ['dsmLoss unknown weighting', () => sf.dsmLoss(x0, eps, { weight: any('karras'), dim: d }), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'options.weight'],
  ['dsmLoss named weighting without sigma', () => sf.dsmLoss(x0, eps, { weight: 'edm', dim: d }), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'options.sigma'],
  ['dsmLoss negative weight', () => sf.dsmLoss(x0, eps, { weight: Float32Array.of(1, -1, 1, 1) }), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'options.weight[1]'],
  ['dsmLoss target length', () => sf.dsmLoss(x0, eps.subarray(2), { dim: d }), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'target'],
  ['dsmLoss gradOut partially overlapping', () => { const buf = new Float32Array(B * d + 1); return sf.dsmLoss(buf.subarray(0, B * d), eps, { dim: d, gradOut: buf.subarray(1) }); }, 'ERR_SCOREFIELD_ALIAS', sf.ScorefieldShapeError, 'options.gradOut'],
  ['dsmLoss dim and per-sample disagree', () => sf.dsmLoss(x0, eps, { weight: sig, dim: 4 }), 'ERR_SCOREFIELD_SHAPE', sf.ScorefieldShapeError, 'options.dim'],
  ['options not an object', () => sf.dsmLoss(x0, eps, any(5)), 'ERR_SCOREFIELD_TYPE', sf.ScorefieldTypeError, 'options'],
  ['setThreads(0)', () => sf.setThreads(0), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'threads'],
  ['setThreads(1.5)', () => sf.setThreads(1.5), 'ERR_SCOREFIELD_RANGE', sf.ScorefieldRangeError, 'threads'],
  ['setSimdLevel unknown', () => sf.setSimdLevel(any('sse9')), 'ERR_SCOREFIELD_UNSUPPORTED', sf.ScorefieldUnsupportedError, 'sse9'],
];

test('bad input table: coded errors, clear messages, inputs unchanged', (t) => {
  t.log(`${cases.length} bad-input cases`);
  for (const [name, call, code, cls, mentions] of cases) {
    const err = t.throws(call, undefined, name) as (Error & { code?: string }) | undefined;
    if (!err) continue;
    t.is(err.code, code, name);
    t.true(err instanceof cls, `${name}: ${err.constructor.name}`);
    t.true(err instanceof sf.ScorefieldError, name);
    t.regex(err.message, /^Expected .+ for .+ but received .+/, name);
    t.true(err.message.includes(mentions), `${name}: "${err.message}" should mention ${mentions}`);
  }
  t.true([x0, eps, sig].every((a, i) => bitsEqual(a, snapshot[i])), 'inputs unchanged');
});

test('async forms reject (never throw synchronously) with the same coded errors', async (t) => {
  const p = sf.perturbAsync(x0, eps, 1, -1);
  t.true(p instanceof Promise);
  await t.throwsAsync(p, { code: 'ERR_SCOREFIELD_RANGE', instanceOf: sf.ScorefieldRangeError });
  await t.throwsAsync(sf.randnAsync(new Float32Array(3), { seed: 1, dim: 2 }), { code: 'ERR_SCOREFIELD_SHAPE' });
  await t.throwsAsync(sf.dsmLossAsync(x0, any([1])), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(sf.convertAsync('x0', 'eps', x0, detached(B * d), 1, 1), { code: 'ERR_SCOREFIELD_DETACHED' });
});

test('the raw binding defends itself too: coded errors, no crash', async (t) => {
  const { native } = await import('../lib/native');
  const n = native();
  const f = new Float32Array(8);
  t.throws(() => n.perturb(f, f, f, 2 ** 40, 2 ** 40, 1, 1, false), { code: 'ERR_SCOREFIELD_OVERFLOW' });
  t.throws(() => n.perturb(f, f, f, 3, 3, 1, 1, false), { code: 'ERR_SCOREFIELD_SHAPE' });
  t.throws(() => n.perturb(f, any([1]), f, 2, 4, 1, 1, false), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => n.perturb(f, f, f, 2, 4, Number.NaN, 1, false), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => n.perturb(f, f, f, -1, 4, 1, 1, false), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => n.perturb(f, detached(8), f, 2, 4, 1, 1, false), { code: 'ERR_SCOREFIELD_DETACHED' });
  t.throws(() => n.randn(f, 2, 4, any(1), 0, 0, false), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => n.randn(f, 2, 4, -1n, 0, 0, false), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => n.convert(7, 0, f, f, f, 2, 4, 1, 1, false), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => n.dsmLoss(f, f, 2, 4, new Float32Array(3), null, false), { code: 'ERR_SCOREFIELD_SHAPE' });
});

test('estimator bad input: coded errors naming the argument', async (t) => {
  const d = 4;
  const data = rand(40 * d, 5);
  const ref = new sf.ReferenceSet(data, d);
  const x = rand(3 * d, 6);
  const xc = x.slice();
  const table: Array<[string, () => unknown, string, string]> = [
    ['dim mismatch', () => ref.estimate(rand(10, 1), { sigma: 1 }), 'ERR_SCOREFIELD_SHAPE', 'x'],
    ['N = 0', () => new sf.ReferenceSet(new Float32Array(0), 3), 'ERR_SCOREFIELD_SHAPE', 'data'],
    ['data not divisible by dim', () => new sf.ReferenceSet(new Float32Array(10), 3), 'ERR_SCOREFIELD_SHAPE', 'data'],
    ['dim 0', () => new sf.ReferenceSet(new Float32Array(10), 0), 'ERR_SCOREFIELD_RANGE', 'dim'],
    ['NaN in data', () => new sf.ReferenceSet(Float32Array.of(1, Number.NaN), 1), 'ERR_SCOREFIELD_RANGE', 'data'],
    ['plain array data', () => new sf.ReferenceSet(any([1, 2]), 1), 'ERR_SCOREFIELD_TYPE', 'data'],
    ['empty batch', () => ref.estimate(new Float32Array(0), { sigma: 1 }), 'ERR_SCOREFIELD_SHAPE', 'x'],
    ['missing sigma', () => ref.estimate(x, any({})), 'ERR_SCOREFIELD_TYPE', 'options.sigma'],
    ['non-finite sigma', () => ref.estimate(x, { sigma: Number.POSITIVE_INFINITY }), 'ERR_SCOREFIELD_RANGE', 'options.sigma'],
    ['zero sigma', () => ref.estimate(x, { sigma: 0 }), 'ERR_SCOREFIELD_RANGE', 'options.sigma'],
    ['per-sample sigma of the wrong length', () => ref.estimate(x, { sigma: new Float32Array(2).fill(1) }), 'ERR_SCOREFIELD_SHAPE', 'options.sigma'],
    ['NaN in x', () => ref.estimate(Float32Array.of(1, 2, Number.NaN, 4), { sigma: 1 }), 'ERR_SCOREFIELD_RANGE', 'x'],
    ['unknown output', () => ref.estimate(x, { sigma: 1, outputs: any(['median']) }), 'ERR_SCOREFIELD_TYPE', 'options.outputs'],
    ['empty outputs', () => ref.estimate(x, { sigma: 1, outputs: any([]) }), 'ERR_SCOREFIELD_TYPE', 'options.outputs'],
    ['wrong out buffer size', () => ref.estimate(x, { sigma: 1, outputs: ['mean'], out: { mean: new Float32Array(5) } }), 'ERR_SCOREFIELD_SHAPE', 'options.out.mean'],
    ['out buffer for an output not asked', () => ref.estimate(x, { sigma: 1, outputs: ['mean'], out: { ess: new Float32Array(3) } }), 'ERR_SCOREFIELD_TYPE', 'options.out.ess'],
    ['out aliasing x', () => ref.estimate(x, { sigma: 1, outputs: ['mean'], out: { mean: x } }), 'ERR_SCOREFIELD_ALIAS', 'x'],
    ['unknown kernel', () => ref.estimate(x, { sigma: 1, kernel: any('laplace') }), 'ERR_SCOREFIELD_TYPE', 'options.kernel'],
    ['shard end past size', () => ref.estimatePartial(x, { sigma: 1, end: 41 }), 'ERR_SCOREFIELD_RANGE', 'options.end'],
    ['merge of mismatched states', () => sf.ReferenceSet.mergePartials([ref.estimatePartial(x, { sigma: 1 }), ref.estimatePartial(x.subarray(0, d), { sigma: 1 })]), 'ERR_SCOREFIELD_SHAPE', 'mergePartials'],
    ['merge of a non-state', () => sf.ReferenceSet.mergePartials([any({ batch: 1 })]), 'ERR_SCOREFIELD_TYPE', 'state'],
    ['stableTargets with a non-set', () => sf.stableTargets(x, x, any({}), { sigma: 1 }), 'ERR_SCOREFIELD_TYPE', 'ref'],
    ['stableTargets x0 length', () => sf.stableTargets(x.subarray(1), x, ref, { sigma: 1 }), 'ERR_SCOREFIELD_SHAPE', 'x0Batch'],
  ];
  t.log(`${table.length} estimator bad-input cases`);
  for (const [name, call, code, mentions] of table) {
    const err = t.throws(call, undefined, name) as (Error & { code?: string }) | undefined;
    if (!err) continue;
    t.is(err.code, code, name);
    t.true(err instanceof sf.ScorefieldError, name);
    t.true(err.message.includes(mentions), `${name}: "${err.message}" should mention ${mentions}`);
  }
  await t.throwsAsync(ref.estimateAsync(x, { sigma: -1 }), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(ref.estimateAsync(Float32Array.of(1, 2, 3, Number.NaN), { sigma: 1 }), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(sf.ReferenceSet.createAsync(new Float32Array(0), 2), { code: 'ERR_SCOREFIELD_SHAPE' });
  t.true(bitsEqual(x, xc), 'x unchanged');
});
