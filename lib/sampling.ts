/**
 * The sampling options every sampler shares, validated in one place: the noise grid, EDM's
 * churn, and the prior at the largest level (through the kernel's own samplePrior, so the
 * Gaussian prior is written once). Used by the JS-driven samplers (samplers.ts), the native
 * sampler (ReferenceSet.sample) and the command.
 */
import { ScorefieldRangeError, ScorefieldShapeError, ScorefieldUnsupportedError } from './errors';
import * as is from './is';
import { gaussian, kernelArg, type Kernel } from './kernels';
import { noiseInto, seed64, seedArray } from './steps';
import * as alloc from './alloc';

export interface ChurnOptions {
  /** EDM's S_churn (default 0: deterministic). */
  sChurn?: number;
  /** Churn only where sTmin <= sigma <= sTmax (defaults 0 and Infinity). */
  sTmin?: number;
  sTmax?: number;
  /** EDM's S_noise (default 1). */
  sNoise?: number;
}

/** Churn options with their defaults, validated (sTmax Infinity allowed). */
export function churnOf(v: unknown, name: string): Required<ChurnOptions> {
  const c = is.options<ChurnOptions>(v, name);
  return {
    sChurn: c.sChurn === undefined ? 0 : is.scalar(c.sChurn, `${name}.sChurn`, 'nonnegative'),
    sTmin: c.sTmin === undefined ? 0 : is.scalar(c.sTmin, `${name}.sTmin`, 'nonnegative'),
    sTmax: c.sTmax === undefined || c.sTmax === Infinity ? Infinity : is.scalar(c.sTmax, `${name}.sTmax`, 'nonnegative'),
    sNoise: c.sNoise === undefined ? 1 : is.scalar(c.sNoise, `${name}.sNoise`, 'nonnegative'),
  };
}

/** Validates a noise grid: finite, > 0 except a final 0, strictly decreasing, >= 2 values. */
export function checkSigmas(sigmas: unknown, name = 'sigmas'): Float64Array {
  if (!(sigmas instanceof Float64Array || sigmas instanceof Float32Array || Array.isArray(sigmas))) {
    throw is.typeError('a Float64Array, Float32Array or array of noise levels', name, sigmas);
  }
  const s = Float64Array.from(sigmas as ArrayLike<number>);
  if (s.length < 2) throw new ScorefieldShapeError(`Expected at least 2 noise levels for ${name} but received ${s.length}`);
  for (let i = 0; i < s.length; i++) {
    const last = i === s.length - 1;
    if (!Number.isFinite(s[i]) || s[i] < 0 || (!last && s[i] === 0)) {
      throw new ScorefieldRangeError(`Expected finite levels > 0 (a final 0 allowed) for ${name}[${i}] but received ${is.describe(s[i])}`);
    }
    if (i > 0 && !(s[i] < s[i - 1])) {
      throw new ScorefieldRangeError(`Expected a strictly decreasing grid for ${name}[${i}] but received ${s[i]} after ${s[i - 1]}`);
    }
  }
  return s;
}

/**
 * Draws from the prior at the largest level sigmaMax: the kernel's samplePrior (Gaussian:
 * sigmaMax z with z from stream 0 of the seed, sample i's row depending only on the seed and
 * offset + i). Per-sample seeds or an offset are supported for the Gaussian kernel.
 */
export function prior(
  kernel: Kernel | 'gaussian' | undefined,
  batch: number,
  dim: number,
  sigmaMax: number,
  noise: { seed: bigint | number; seeds?: BigUint64Array | null; offset?: number },
): Float32Array {
  const k = kernel === undefined || kernel === 'gaussian' ? gaussian() : kernel;
  const offset = noise.offset ?? 0;
  if (noise.seeds || offset) {
    if (k.kind !== 'gaussian') throw new ScorefieldUnsupportedError('Expected a seed without seeds or offset for a non-Gaussian prior but received them');
    const x = noiseInto(alloc.f32(batch * dim, 'the samples (batch x dim)'), dim, { seed: noise.seed, seeds: noise.seeds ?? undefined, stream: 0, offset });
    for (let i = 0; i < x.length; i++) x[i] *= sigmaMax;
    return x;
  }
  return k.samplePrior(batch, dim, sigmaMax, { seed: noise.seed });
}

export interface SampleOptions {
  /** Decreasing noise grid, usually ending with 0 (e.g. schedules.karrasSigmas(18)). */
  sigmas: ArrayLike<number>;
  /** 'heun' (default; 2n - 1 evaluations for n steps) or 'euler'. */
  solver?: 'euler' | 'heun';
  /** Number of samples when `x` is not given (default 1). */
  batch?: number;
  /** Initial points (batch x dim); copied, never written. Default: sigmas[0] times seeded noise. */
  x?: Float32Array;
  /** Seed of the prior draw (stream 0) and of the churn noise (stream i + 1 at step i). */
  seed?: number | bigint;
  /** One seed per sample instead of `seed`. */
  seeds?: BigUint64Array | ReadonlyArray<number | bigint>;
  /** Index of the first sample (noise of sample i uses offset + i); default 0. */
  offset?: number;
  kernel?: Kernel | 'gaussian';
  /** EDM stochastic churn. */
  churn?: ChurnOptions;
  /** Called on the main thread after each step (step count, total), without blocking the loop. */
  onProgress?: (step: number, total: number) => void;
  /**
   * Stops the native loop between evaluations; the promise rejects with an AbortError. An abort
   * before the promise settles always rejects (also one from onProgress after the loop ended).
   */
  signal?: AbortSignal;
}

/**
 * The validated start of a sampling run over a set of `dim` dimensions, shared by
 * ReferenceSet.sample and ShardedReferenceSet.sample: the options, the grid, the solver, the
 * seeds, the batch, the kernel (encoded for the binding) and the initial points (the caller's,
 * copied, or the kernel's prior at sigmas[0]), and the churn.
 */
export function sampleRun(options: unknown, dim: number) {
  const o = is.options<SampleOptions>(options, 'options');
  const sigmas = checkSigmas(o.sigmas, 'options.sigmas');
  const solver = o.solver ?? 'heun';
  if (solver !== 'euler' && solver !== 'heun') throw is.typeError("'euler' or 'heun'", 'options.solver', solver);
  const seed = seed64(o.seed, 'options.seed');
  const offset = o.offset === undefined ? 0 : is.integer(o.offset, 'options.offset');
  let given: Float32Array | undefined;
  let B: number;
  if (o.x !== undefined) {
    given = is.f32(o.x, 'options.x');
    if (given.length === 0 || given.length % dim !== 0) {
      throw new ScorefieldShapeError(`Expected a non-empty length divisible by dim ${dim} for options.x but received ${is.describe(given)}`);
    }
    if (o.batch !== undefined && o.batch * dim !== given.length) {
      throw new ScorefieldShapeError(`Expected options.batch = ${given.length / dim} (the rows of options.x) for options.batch but received ${o.batch}`);
    }
    B = given.length / dim;
  } else {
    B = o.batch === undefined ? 1 : is.integer(o.batch, 'options.batch', 1, 2 ** 31);
  }
  const seeds = seedArray(o.seeds, B, 'options.seeds');
  const kernel = kernelArg(o.kernel, 'options.kernel');
  // the caller's start (copied: x is written) or a draw from the kernel's prior
  const x = given ? given.slice() : prior(o.kernel, B, dim, sigmas[0], { seed, seeds, offset });
  const churn = churnOf(o.churn, 'options.churn');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw is.typeError('a function', 'options.onProgress', o.onProgress);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw is.typeError('an AbortSignal', 'options.signal', o.signal);
  return { o, sigmas, solver, seed, seeds, offset, B, x, churn, kernel };
}
