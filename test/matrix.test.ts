// Every exported entry point against a matrix of bad inputs (issue 8): each case must end in
// the documented coded error (or, where the input is legal, a result equal to the one from a
// plain buffer), leave every input the caller did not hand over as an output unchanged, and
// leave the process healthy. The matrix size is printed.
import test from 'ava';
import {
  convert,
  convertAsync,
  conditionalScore,
  conditionalScoreAsync,
  churnStep,
  datasets,
  dsmLoss,
  dsmLossAsync,
  eulerMaruyamaStep,
  eulerStep,
  heunStep,
  kernelScales,
  langevinStep,
  npy,
  objectives,
  perturb,
  perturbAsync,
  poisson,
  poissonRadii,
  radial,
  randn,
  randnAsync,
  ReferenceSet,
  sampleEuler,
  sampleEulerMaruyama,
  sampleHeun,
  sampleLangevin,
  schedules,
  setMemoryLimit,
  setSimdLevel,
  setThreads,
  stableTargets,
  stableTargetsAsync,
  velocityTarget,
  velocityTargetAsync,
  EulerDiscreteScheduler,
  diffusersSigmas,
  gaussian,
  type ErrorCode,
} from '../lib/index';

type Expect = ErrorCode | 'ok';
interface Case {
  fn: string;
  what: string;
  expect: Expect;
  run: () => unknown;
  /** Arrays the call must not change. */
  inputs: unknown[];
  /** For legal-but-unusual inputs: the same call on plain buffers, to compare results. */
  reference?: () => unknown;
}

const B = 3, d = 4, n = B * d;
const f32 = (seed: number, len = n) => randn(len, { seed, dim: 1 });
const detached = () => {
  const a = f32(99);
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
  return a;
};
const shared = (a: Float32Array) => {
  const s = new Float32Array(new SharedArrayBuffer(a.byteLength));
  s.set(a);
  return s;
};
const unaligned = (a: Float32Array) => {
  const s = new Float32Array(a.length + 1).subarray(1);
  s.set(a);
  return s;
};
const withNaN = (a: Float32Array) => {
  const c = a.slice();
  c[Math.min(5, c.length - 1)] = NaN;
  return c;
};

/**
 * The array-argument mutations every spec gets at every array position, with their default
 * expectations (a spec may override: `nan` for functions that let NaN propagate, `lengths`
 * when the length is free).
 */
function arrayMutations(spec: Spec): Array<[string, (a: Float32Array) => unknown, Expect]> {
  const m: Array<[string, (a: Float32Array) => unknown, Expect]> = [
    ['a plain array', (a) => Array.from(a), 'ERR_SCOREFIELD_TYPE'],
    ['a Float64Array', (a) => Float64Array.from(a), 'ERR_SCOREFIELD_TYPE'],
    ['null', () => null, 'ERR_SCOREFIELD_TYPE'],
    ['a string', () => 'x', 'ERR_SCOREFIELD_TYPE'],
    ['a detached buffer', () => detached(), 'ERR_SCOREFIELD_DETACHED'],
    ['a SharedArrayBuffer view', (a) => shared(a), 'ok'],
    ['an unaligned subarray view', (a) => unaligned(a), 'ok'],
    ['NaN data', (a) => withNaN(a), spec.nan ?? 'ok'],
  ];
  if (spec.lengths !== false) m.push(['one element short', (a) => a.slice(1), 'ERR_SCOREFIELD_SHAPE'], ['empty', () => new Float32Array(0), spec.emptyOk ? 'ok' : 'ERR_SCOREFIELD_SHAPE']);
  return m;
}

const scalarMutations: Array<[string, unknown, Expect]> = [
  ['NaN', NaN, 'ERR_SCOREFIELD_RANGE'],
  ['Infinity', Infinity, 'ERR_SCOREFIELD_RANGE'],
  ['negative', -1, 'ERR_SCOREFIELD_RANGE'],
  ['a string', '1', 'ERR_SCOREFIELD_TYPE'],
  ['a per-sample array whose length does not divide the data', new Float32Array(B + 2).fill(1), 'ERR_SCOREFIELD_SHAPE'],
];

interface Spec {
  fn: string;
  args: () => unknown[];
  call: (...a: unknown[]) => unknown;
  /** Positions of Float32Array inputs. */
  arrays: number[];
  /** Positions of positive per-sample coefficients (sigma, stepSize, ...). */
  scalars?: number[];
  /** Positions of coefficients that may be any finite number (alpha): negative values are legal. */
  finite?: number[];
  /** An empty batch is legal (the call returns an empty result). */
  emptyOk?: boolean;
  nan?: Expect;
  lengths?: boolean;
  /** Builds args whose `out` partially overlaps the input at position `arrays[0]`. */
  alias?: (args: unknown[]) => unknown[];
}

const per = () => Float32Array.of(0.5, 1, 2);
const opt = (o: object) => o;
const ref = new ReferenceSet(f32(7, 50 * d), d);

const specs: Spec[] = [
  ...(['sync', 'async'] as const).flatMap((mode): Spec[] => {
    const s = mode === 'sync';
    return [
      {
        fn: s ? 'perturb' : 'perturbAsync',
        args: () => [f32(1), f32(2), per(), 0.5],
        call: (...a) => (s ? perturb : perturbAsync)(...(a as Parameters<typeof perturb>)),
        arrays: [0, 1],
        scalars: [3],
        finite: [2],
        alias: (a) => {
          const big = new Float32Array(n + 2);
          big.set(a[0] as Float32Array);
          return [big.subarray(0, n), a[1], a[2], a[3], big.subarray(1, n + 1)];
        },
      },
      {
        fn: s ? 'conditionalScore' : 'conditionalScoreAsync',
        args: () => [f32(1), f32(2), per(), 0.5],
        call: (...a) => (s ? conditionalScore : conditionalScoreAsync)(...(a as Parameters<typeof conditionalScore>)),
        arrays: [0, 1],
        scalars: [3],
        finite: [2],
      },
      {
        fn: s ? 'velocityTarget' : 'velocityTargetAsync',
        args: () => [f32(1), f32(2), per(), 0.5],
        call: (...a) => (s ? velocityTarget : velocityTargetAsync)(...(a as Parameters<typeof velocityTarget>)),
        arrays: [0, 1],
      },
      {
        fn: s ? 'convert' : 'convertAsync',
        args: () => ['eps', 'x0', f32(1), f32(2), per(), 0.5],
        call: (...a) => (s ? convert : convertAsync)(...(a as Parameters<typeof convert>)),
        arrays: [2, 3],
        scalars: [4, 5],
      },
      {
        fn: s ? 'dsmLoss' : 'dsmLossAsync',
        args: () => [f32(1), f32(2), opt({ weight: 'sigma2', sigma: per() })],
        call: (...a) => (s ? dsmLoss : dsmLossAsync)(...(a as Parameters<typeof dsmLoss>)),
        arrays: [0, 1],
      },
      {
        fn: s ? 'stableTargets' : 'stableTargetsAsync',
        args: () => [f32(1), f32(2), ref, opt({ sigma: per() })],
        call: (...a) => (s ? stableTargets : stableTargetsAsync)(...(a as Parameters<typeof stableTargets>)),
        arrays: [0, 1],
        nan: 'ERR_SCOREFIELD_RANGE',
      },
      {
        fn: s ? 'ReferenceSet#estimate' : 'ReferenceSet#estimateAsync',
        args: () => [f32(1), opt({ sigma: per(), outputs: ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] })],
        call: (x, o) => (s ? ref.estimate(x as Float32Array, o as never) : ref.estimateAsync(x as Float32Array, o as never)),
        arrays: [0],
        nan: 'ERR_SCOREFIELD_RANGE',
      },
    ];
  }),
  { fn: 'eulerStep', args: () => [f32(1), f32(2), per(), 0.25, opt({ dim: d })], call: (...a) => eulerStep(...(a as Parameters<typeof eulerStep>)), arrays: [0, 1], scalars: [2] },
  { fn: 'heunStep', args: () => [f32(1), f32(2), f32(3), f32(4), 1, 0.5, opt({ dim: d })], call: (...a) => heunStep(...(a as Parameters<typeof heunStep>)), arrays: [0, 1, 2, 3], scalars: [4] },
  { fn: 'eulerMaruyamaStep', args: () => [f32(1), f32(2), 1, 0.5, opt({ dim: d, noise: { seed: 1 } })], call: (...a) => eulerMaruyamaStep(...(a as Parameters<typeof eulerMaruyamaStep>)), arrays: [0, 1], scalars: [2] },
  { fn: 'langevinStep', args: () => [f32(1), f32(2), 1, 0.01, opt({ dim: d, noise: { seed: 1 } })], call: (...a) => langevinStep(...(a as Parameters<typeof langevinStep>)), arrays: [0, 1], scalars: [2, 3] },
  { fn: 'churnStep', args: () => [f32(1), 1, 1.2, opt({ dim: d, noise: { seed: 1 } })], call: (...a) => churnStep(...(a as Parameters<typeof churnStep>)), arrays: [0], scalars: [1, 2], emptyOk: true },
  { fn: 'new ReferenceSet', args: () => [f32(1), d], call: (a, dim) => new ReferenceSet(a as Float32Array, dim as number), arrays: [0], nan: 'ERR_SCOREFIELD_RANGE', lengths: false },
  { fn: 'ReferenceSet.createAsync', args: () => [f32(1), d], call: (a, dim) => ReferenceSet.createAsync(a as Float32Array, dim as number), arrays: [0], nan: 'ERR_SCOREFIELD_RANGE', lengths: false },
  { fn: 'kernel.perturb (poisson)', args: () => [f32(1), per(), opt({ dim: d, seed: 1 })], call: (a, t, o) => poisson({ D: 3 }).perturb(a as Float32Array, t as Float32Array, o as never), arrays: [0], scalars: [1], lengths: false },
  { fn: 'kernel.conditionalField (radial)', args: () => [f32(1), f32(2), per()], call: (a, b, t) => radial('tanh').conditionalField(a as Float32Array, b as Float32Array, t as Float32Array), arrays: [0, 1], scalars: [2] },
  { fn: 'npy.encode', args: () => [f32(1), B, d], call: (a, r, c) => npy.encode(a as Float32Array, r as number, c as number), arrays: [0] },
];

function casesOf(spec: Spec): Case[] {
  const out: Case[] = [];
  const base = spec.args();
  out.push({ fn: spec.fn, what: 'good arguments', expect: 'ok', run: () => spec.call(...base), inputs: base });
  for (const pos of spec.arrays) {
    for (const [what, mutate, expect] of arrayMutations(spec)) {
      const args = spec.args();
      const plain = args.slice();
      args[pos] = mutate(args[pos] as Float32Array);
      out.push({ fn: spec.fn, what: `argument ${pos}: ${what}`, expect, run: () => spec.call(...args), inputs: args, reference: what.includes('view') ? () => spec.call(...plain) : undefined });
    }
  }
  for (const pos of [...(spec.scalars ?? []), ...(spec.finite ?? [])]) {
    const finite = spec.finite?.includes(pos);
    for (const [what, value, expect] of scalarMutations) {
      const args = spec.args();
      args[pos] = value;
      const e = finite && what === 'negative' ? 'ok' : expect;
      out.push({ fn: spec.fn, what: `coefficient ${pos}: ${what}`, expect: e, run: () => spec.call(...args), inputs: args });
    }
  }
  if (spec.alias) {
    const args = spec.alias(spec.args());
    out.push({ fn: spec.fn, what: 'out partially overlapping an input', expect: 'ERR_SCOREFIELD_ALIAS', run: () => spec.call(...args), inputs: args.slice(0, -1) });
  }
  return out;
}

const hang = () => new Promise<Float32Array>(() => {});
const denoiserCases = (): Case[] => {
  const x = f32(5, n);
  const sigmas = schedules.karrasSigmas(4);
  const bad: Array<[string, (x: Float32Array) => unknown, Expect, boolean]> = [
    ['a denoiser that throws', () => {
      throw new Error('boom');
    }, 'ERR_SCOREFIELD_DENOISER', false],
    ['a denoiser that rejects', () => Promise.reject(new Error('boom')), 'ERR_SCOREFIELD_DENOISER', false],
    ['a denoiser returning a wrong length', (v) => v.subarray(1), 'ERR_SCOREFIELD_DENOISER', false],
    ['a denoiser returning a plain array', (v) => Array.from(v), 'ERR_SCOREFIELD_DENOISER', false],
    ['a denoiser that never resolves, then an abort', () => hang(), 'ERR_SCOREFIELD_ABORTED', true],
  ];
  const samplers: Array<[string, (den: never, x: Float32Array, s: ArrayLike<number>, o: object) => Promise<unknown>]> = [
    ['sampleEuler', sampleEuler as never],
    ['sampleHeun', sampleHeun as never],
    ['sampleEulerMaruyama', sampleEulerMaruyama as never],
    ['sampleLangevin', sampleLangevin as never],
  ];
  const out: Case[] = [];
  for (const [name, sampler] of samplers) {
    for (const [what, den, expect, abort] of bad) {
      out.push({
        fn: name,
        what,
        expect,
        inputs: [x],
        run: () => {
          const c = new AbortController();
          if (abort) setTimeout(() => c.abort(), 20);
          return sampler(den as never, x, sigmas, { dim: d, signal: c.signal, seed: 1 });
        },
      });
    }
    out.push({ fn: name, what: 'a non-monotone grid', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => sampler(((v: Float32Array) => v) as never, x, [1, 2, 0], { dim: d }) });
    out.push({ fn: name, what: 'a grid with NaN', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => sampler(((v: Float32Array) => v) as never, x, [1, NaN, 0], { dim: d }) });
  }
  for (const [what, den, expect, abort] of bad) {
    out.push({
      fn: 'objectives.evaluate',
      what: what.replace('denoiser', 'model'),
      expect,
      inputs: [],
      run: () => {
        const c = new AbortController();
        if (abort) setTimeout(() => c.abort(), 20);
        return objectives.evaluate(den as never, ref, { sigma: 1, samples: 10, signal: c.signal });
      },
    });
  }
  return out;
};

const sizeCases = (): Case[] => {
  const x = f32(3);
  return [
    { fn: 'randn', what: 'a length of 2^53', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => randn(2 ** 53, { seed: 1 }) },
    { fn: 'randn', what: 'a length of 2^31 + 1 (too large to allocate here)', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => randn(2 ** 40, { seed: 1 }) },
    { fn: 'randnAsync', what: 'a negative length', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => randnAsync(-1, { seed: 1 }) },
    { fn: 'randn', what: 'length 0', expect: 'ok', inputs: [], run: () => randn(0, { seed: 1 }) },
    { fn: 'randn', what: 'a seed of 2^64', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => randn(4, { seed: 2n ** 64n }) },
    { fn: 'new ReferenceSet', what: 'dim 2^40 (B x d overflowing 2^31 and beyond)', expect: 'ERR_SCOREFIELD_SHAPE', inputs: [x], run: () => new ReferenceSet(x, 2 ** 40) },
    { fn: 'new ReferenceSet', what: 'dim 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => new ReferenceSet(x, 0) },
    { fn: 'new ReferenceSet', what: 'a length not divisible by dim', expect: 'ERR_SCOREFIELD_SHAPE', inputs: [x], run: () => new ReferenceSet(x, 5) },
    { fn: 'new ReferenceSet', what: 'no rows', expect: 'ERR_SCOREFIELD_SHAPE', inputs: [], run: () => new ReferenceSet(new Float32Array(0), 4) },
    { fn: 'ReferenceSet#sample', what: 'batch 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.sample({ sigmas: [1, 0], batch: 0 }) },
    { fn: 'ReferenceSet#sample', what: 'batch 2^31 + 1', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.sample({ sigmas: [1, 0], batch: 2 ** 31 + 1 }) },
    { fn: 'ReferenceSet#sample', what: 'a non-monotone grid', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.sample({ sigmas: [1, 1, 0], batch: 2 }) },
    { fn: 'ReferenceSet#sample', what: 'a negative level', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.sample({ sigmas: [1, -1], batch: 2 }) },
    { fn: 'ReferenceSet#sample', what: 'an unknown solver', expect: 'ERR_SCOREFIELD_TYPE', inputs: [], run: () => ref.sample({ sigmas: [1, 0], solver: 'rk4' as never }) },
    { fn: 'ReferenceSet#sample', what: 'x of the wrong length', expect: 'ERR_SCOREFIELD_SHAPE', inputs: [x], run: () => ref.sample({ sigmas: [1, 0], x: x.subarray(1) }) },
    { fn: 'ReferenceSet#estimate', what: 'sigma 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => ref.estimate(x, { sigma: 0 }) },
    { fn: 'ReferenceSet#estimate', what: 'an out buffer aliasing x', expect: 'ERR_SCOREFIELD_ALIAS', inputs: [], run: () => ref.estimate(x, { sigma: 1, outputs: ['mean'], out: { mean: x } }) },
    { fn: 'ReferenceSet#estimate', what: 'an unknown output', expect: 'ERR_SCOREFIELD_TYPE', inputs: [x], run: () => ref.estimate(x, { sigma: 1, outputs: ['median' as never] }) },
    { fn: 'ReferenceSet#estimate', what: 'score from the Poisson kernel', expect: 'ERR_SCOREFIELD_UNSUPPORTED', inputs: [x], run: () => ref.estimate(x, { sigma: 1, kernel: poisson(), outputs: ['score'] }) },
    { fn: 'ReferenceSet#estimatePartial', what: 'an end beyond the set', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => ref.estimatePartial(x, { sigma: 1, start: 0, end: 51 }) },
    { fn: 'ReferenceSet.mergePartials', what: 'no states', expect: 'ERR_SCOREFIELD_TYPE', inputs: [], run: () => ReferenceSet.mergePartials([]) },
    { fn: 'ReferenceSet.mergePartials', what: 'a forged state', expect: 'ERR_SCOREFIELD_TYPE', inputs: [], run: () => ReferenceSet.mergePartials([{ batch: 1 } as never]) },
    { fn: 'ReferenceSet#rows', what: 'an index past the end', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.rows([50]) },
    { fn: 'ReferenceSet#workingMemory', what: 'a negative batch', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => ref.workingMemory(-1) },
    { fn: 'schedules.karrasSigmas', what: 'n = 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => schedules.karrasSigmas(0) },
    { fn: 'schedules.karrasSigmas', what: 'sigmaMin > sigmaMax', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => schedules.karrasSigmas(5, { sigmaMin: 2, sigmaMax: 1 }) },
    { fn: 'schedules.vp', what: 'a negative beta', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => schedules.vp({ betaMin: -1 }) },
    { fn: 'schedules.ve().sigma', what: 'NaN time', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => schedules.ve().sigma(NaN) },
    { fn: 'diffusersSigmas', what: 'n = 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => diffusersSigmas(0) },
    { fn: 'EulerDiscreteScheduler#step', what: 'a timestep not in the schedule', expect: 'ERR_SCOREFIELD_RANGE', inputs: [x], run: () => new EulerDiscreteScheduler().step(x, 1e9, x) },
    { fn: 'poisson', what: 'D = 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => poisson({ D: 0 }) },
    { fn: 'radial', what: 'an unknown family', expect: 'ERR_SCOREFIELD_TYPE', inputs: [], run: () => radial('cauchy' as never) },
    { fn: 'poissonRadii', what: 'D = -1', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => poissonRadii([1], -1) },
    { fn: 'kernelScales', what: 'dim 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => kernelScales(gaussian(), [1], 0) },
    { fn: 'kernel.samplePrior', what: 'batch 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => poisson().samplePrior(0, 2, 1) },
    { fn: 'setThreads', what: '0 threads', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => setThreads(0) },
    { fn: 'setSimdLevel', what: 'an unknown level', expect: 'ERR_SCOREFIELD_UNSUPPORTED', inputs: [], run: () => setSimdLevel('sse9' as never) },
    { fn: 'setMemoryLimit', what: 'a negative cap', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => setMemoryLimit(-5) },
    { fn: 'npy.parse', what: 'bytes that are not .npy', expect: 'ERR_SCOREFIELD_FORMAT', inputs: [], run: () => npy.parse(new Uint8Array(20)) },
    { fn: 'npy.read', what: 'a missing file', expect: 'ERR_SCOREFIELD_FILE', inputs: [], run: () => npy.read('/nonexistent/x.npy') },
    { fn: 'datasets.moons', what: 'n = 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => datasets.moons({ n: 0 }) },
    { fn: 'objectives.csm', what: 'samples = 0', expect: 'ERR_SCOREFIELD_RANGE', inputs: [], run: () => objectives.csm((v) => v, ref, { sigma: 1, samples: 0 }) },
    { fn: 'objectives.hyvarinen', what: 'an unknown method', expect: 'ERR_SCOREFIELD_TYPE', inputs: [], run: () => objectives.hyvarinen(ref, ref, { sigma: 1, samples: 5, method: 'exact' as never }) },
  ];
};

function snapshot(inputs: unknown[]): Array<[Float32Array, Uint8Array] | null> {
  return inputs.map((a) => {
    if (!(a instanceof Float32Array)) return null;
    if (a.buffer.byteLength === 0 && a.length === 0) return null;
    return [a, new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice()];
  });
}

function sameBytes(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown => {
    if (v instanceof Float32Array) return Array.from(v, (x) => (Number.isNaN(x) ? 'NaN' : x));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, w]) => [k, norm(w)]));
    return v;
  };
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

test('the bad-input matrix: coded errors, unchanged inputs, a healthy process', async (t) => {
  const cases = [...specs.flatMap(casesOf), ...denoiserCases(), ...sizeCases()];
  const fns = new Set(cases.map((c) => c.fn));
  const failures: string[] = [];
  for (const c of cases) {
    const before = snapshot(c.inputs);
    let outcome: Expect;
    let result: unknown;
    try {
      result = await c.run();
      outcome = 'ok';
    } catch (err) {
      outcome = ((err as { code?: ErrorCode }).code ?? `uncoded ${(err as Error)?.name}: ${(err as Error)?.message}`) as Expect;
    }
    const label = `${c.fn} with ${c.what}`;
    if (outcome !== c.expect) failures.push(`${label}: expected ${c.expect}, got ${outcome}`);
    if (outcome === 'ok' && c.reference && !sameBytes(result, await c.reference())) failures.push(`${label}: result differs from the plain-buffer call`);
    before.forEach((s, i) => {
      if (s && s[0].buffer.byteLength > 0 && !sameBytes(new Uint8Array(s[0].buffer, s[0].byteOffset, s[0].byteLength), s[1])) failures.push(`${label}: input ${i} changed`);
    });
  }
  // the process is healthy: a normal call still gives the right answer
  const x = f32(8);
  const mean = ref.estimate(x, { sigma: 1e3, outputs: ['mean'] }).mean;
  const centre = ref.rows(Array.from({ length: 50 }, (_, j) => j));
  for (let k = 0; k < d; k++) {
    let m = 0;
    for (let j = 0; j < 50; j++) m += centre[j * d + k] / 50;
    t.true(Math.abs(mean[k] - m) < 1e-3);
  }
  const msg = `bad-input matrix: ${cases.length} cases over ${fns.size} entry points`;
  console.log(msg);
  t.log(msg);
  t.deepEqual(failures, []);
});
