/**
 * Batched probability-flow ODE and SDE steps (docs/math.md section 3) in the EDM denoiser form
 * dx/ds = (x - D(x; s)) / s over a decreasing grid of noise levels s. `sigma` and the other
 * levels are one number for the batch or a Float32Array of length B. Noise is the seeded
 * per-sample Philox noise of `randn`: sample i's noise depends on (seed, stream, offset + i),
 * or on (seeds[i], stream) when per-sample seeds are given.
 */
import * as is from './is';
import { callSync, native, operation, type StepRequest } from './native';
import type { PerSample } from './targets';
import * as alloc from './alloc';

export interface NoiseOptions {
  /** 64-bit seed (number or bigint); default 0. */
  seed?: number | bigint;
  /** One seed per sample (BigUint64Array or array of numbers/bigints); overrides `seed`. */
  seeds?: BigUint64Array | ReadonlyArray<number | bigint>;
  /** Stream of this step's noise (a sampler uses one per step); default 0. */
  stream?: number;
  /** Index of the batch's first sample when seeds are not per sample; default 0. */
  offset?: number;
}

export function seed64(v: unknown, name: string): bigint {
  if (v === undefined) return 0n;
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw is.rangeError('a seed from 0 to 2^64 - 1', name, v);
    return v;
  }
  return BigInt(is.integer(v, name));
}

export function seedArray(v: unknown, B: number, name: string): BigUint64Array | null {
  if (v === undefined) return null;
  if (v instanceof BigUint64Array) {
    if (v.length !== B) throw is.typeError(`one seed per sample (${B})`, name, v);
    return v;
  }
  if (!Array.isArray(v) || v.length !== B) throw is.typeError(`a BigUint64Array or array of ${B} seeds`, name, v);
  return BigUint64Array.from(v, (s, i) => seed64(s, `${name}[${i}]`));
}

interface Plan {
  B: number;
  d: number;
  out: Float32Array;
  x: Float32Array;
  D: Float32Array | null;
  xp: Float32Array | null;
  Dp: Float32Array | null;
  a: is.Coefficient;
  b: is.Coefficient;
  sNoise: number;
  seed: bigint;
  seeds: BigUint64Array | null;
  stream: number;
  offset: number;
}

function plan(
  x: unknown,
  D: unknown,
  a: unknown,
  b: unknown,
  names: [string, string],
  domains: [is.Domain, is.Domain],
  dim: unknown,
  out: unknown,
  extra: { xp?: unknown; Dp?: unknown; noise?: NoiseOptions; sNoise?: number } = {},
): Plan {
  const xx = is.f32(x, 'x');
  const dd = D === null ? null : is.f32(D, 'denoised', xx.length);
  const aa = is.coefficient(a, names[0], domains[0]);
  const bb = is.coefficient(b, names[1], domains[1]);
  const { B, d } = is.batchShape(xx.length, [
    [names[0], aa],
    [names[1], bb],
  ], dim === undefined ? undefined : { name: 'dim', value: dim });
  const o = out === undefined ? alloc.f32(xx.length, 'out') : is.f32(out, 'out', xx.length);
  const noise = is.options<NoiseOptions>(extra.noise, 'noise');
  return {
    B,
    d,
    out: o,
    x: xx,
    D: dd,
    xp: extra.xp === undefined ? null : is.f32(extra.xp, 'xNext', xx.length),
    Dp: extra.Dp === undefined ? null : is.f32(extra.Dp, 'denoisedNext', xx.length),
    a: aa,
    b: bb,
    sNoise: extra.sNoise ?? 1,
    seed: seed64(noise.seed, 'noise.seed'),
    seeds: seedArray(noise.seeds, B, 'noise.seeds'),
    stream: noise.stream === undefined ? 0 : is.integer(noise.stream, 'noise.stream', 0, 2 ** 32 - 1),
    offset: noise.offset === undefined ? 0 : is.integer(noise.offset, 'noise.offset'),
  };
}

function request(kind: number, p: Plan, async: boolean): StepRequest {
  return {
    kind, out: p.out, x: p.x, denoised: p.D, xNext: p.xp, denoisedNext: p.Dp, batch: p.B, dim: p.d, a: p.a, b: p.b,
    sNoise: p.sNoise, seed: p.seed, seeds: p.seeds, stream: p.stream, offset: p.offset, async,
  };
}

function run(kind: number, p: Plan): Float32Array {
  callSync(() => native().step(request(kind, p, false)));
  return p.out;
}

/**
 * One step operation, defined once by its kind and how its arguments become a plan; the sync
 * form runs on the calling thread (elementwise work, small), the async form on the pool with
 * private copies of the arrays (see README: Reliability).
 */
const op = <A extends unknown[]>(kind: number, planOf: (...args: A) => Plan) =>
  operation(planOf, (p, async) => native().step(request(kind, p, async)), (p) => p.out);

/** Options shared by the step functions: `dim` fixes B when no per-sample array does; `out` receives the result. */
export interface StepOptions {
  dim?: number;
  out?: Float32Array;
}

type NoisyOptions = StepOptions & { noise?: NoiseOptions };

const euler = op(0, (x: Float32Array, denoised: Float32Array, sigma: PerSample, sigmaNext: PerSample, options: StepOptions = {}) => {
  const o = is.options<StepOptions>(options, 'options');
  return plan(x, denoised, sigma, sigmaNext, ['sigma', 'sigmaNext'], ['positive', 'nonnegative'], o.dim, o.out);
});
const heun = op(
  1,
  (x: Float32Array, denoised: Float32Array, xNext: Float32Array, denoisedNext: Float32Array, sigma: PerSample, sigmaNext: PerSample, options: StepOptions = {}) => {
    const o = is.options<StepOptions>(options, 'options');
    return plan(x, denoised, sigma, sigmaNext, ['sigma', 'sigmaNext'], ['positive', 'nonnegative'], o.dim, o.out, { xp: xNext, Dp: denoisedNext });
  },
);
const eulerMaruyama = op(2, (x: Float32Array, denoised: Float32Array, sigma: PerSample, sigmaNext: PerSample, options: NoisyOptions = {}) => {
  const o = is.options<NoisyOptions>(options, 'options');
  return plan(x, denoised, sigma, sigmaNext, ['sigma', 'sigmaNext'], ['positive', 'nonnegative'], o.dim, o.out, { noise: o.noise });
});
const langevin = op(3, (x: Float32Array, denoised: Float32Array, sigma: PerSample, stepSize: PerSample, options: NoisyOptions = {}) => {
  const o = is.options<NoisyOptions>(options, 'options');
  return plan(x, denoised, sigma, stepSize, ['sigma', 'stepSize'], ['positive', 'positive'], o.dim, o.out, { noise: o.noise });
});
const churn = op(4, (x: Float32Array, sigma: PerSample, sigmaHat: PerSample, options: NoisyOptions & { sNoise?: number } = {}) => {
  const o = is.options<NoisyOptions & { sNoise?: number }>(options, 'options');
  const sNoise = o.sNoise === undefined ? 1 : is.scalar(o.sNoise, 'options.sNoise', 'nonnegative');
  return plan(x, null, sigma, sigmaHat, ['sigma', 'sigmaHat'], ['positive', 'positive'], o.dim, o.out, { noise: o.noise, sNoise });
});

/**
 * Euler step from s to sNext: `x + (sNext - s) (x - D) / s` (onto sNext = 0 it returns D).
 * `out` may be x or denoised itself.
 */
export const eulerStep = euler.sync;
/** Async form of {@link eulerStep}. */
export const eulerStepAsync = euler.async;

/** The first half of a Heun step is the Euler step; this is the second: the trapezoidal correction. */
export const heunStep = heun.sync;
/** Async form of {@link heunStep}. */
export const heunStepAsync = heun.async;

/**
 * Reverse-SDE Euler-Maruyama step in s: `x + (s^2 - sNext^2) score + sqrt(s^2 - sNext^2) z`
 * with score = (D - x) / s^2. `out` must not overlap x or denoised (noise is drawn into it first).
 */
export const eulerMaruyamaStep = eulerMaruyama.sync;
/** Async form of {@link eulerMaruyamaStep}. */
export const eulerMaruyamaStepAsync = eulerMaruyama.async;

/** Langevin step at level s with step size eta: `x + eta (D - x) / s^2 + sqrt(2 eta) z`. */
export const langevinStep = langevin.sync;
/** Async form of {@link langevinStep}. */
export const langevinStepAsync = langevin.async;

/** EDM stochastic churn: `x + sqrt(sHat^2 - s^2) sNoise z` (EDM Algorithm 2, lines 5-6). */
export const churnStep = churn.sync;
/** Async form of {@link churnStep}. */
export const churnStepAsync = churn.async;

/**
 * Standard normal noise into `out` (B x dim) with per-sample seeds or a seed and offset (the
 * noise the steps use, exposed for priors).
 */
export function noiseInto(out: Float32Array, dim: number, noise: NoiseOptions): Float32Array {
  const p = plan(out, null, 1, 1, ['sigma', 'sigmaNext'], ['positive', 'positive'], dim, out, { noise });
  return run(5, p);
}
