/**
 * The sampling options every sampler shares, validated in one place: the noise grid, EDM's
 * churn, and the prior at the largest level (through the kernel's own samplePrior, so the
 * Gaussian prior is written once). Used by the JS-driven samplers (samplers.ts), the native
 * sampler (ReferenceSet.sample) and the command.
 */
import { ScorefieldRangeError, ScorefieldShapeError, ScorefieldUnsupportedError } from './errors';
import * as is from './is';
import { gaussian, type Kernel } from './kernels';
import { noiseInto } from './steps';
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
