/**
 * Samplers in the functional style of k-diffusion: a loop over a decreasing grid of noise
 * levels that calls the caller's denoiser and the native step kernels. `denoiser(x, sigma)`
 * returns (or resolves to) the x0-prediction D(x; sigma) for the whole batch, in the EDM/VE
 * variables (x = x0 + sigma eps). Every sampler resolves to a new Float32Array; the input x is
 * never written.
 */
import { raceAbort } from './abort';
import { ScorefieldAbortError, ScorefieldDenoiserError, ScorefieldShapeError } from './errors';
import * as is from './is';
import { churnStep, eulerMaruyamaStep, eulerStep, heunStep, langevinStep, seed64, seedArray } from './steps';
import { convert, type Parameterization } from './targets';
import type { Schedule } from './schedules';
import { checkSigmas, churnOf, type ChurnOptions } from './sampling';
export { checkSigmas, type ChurnOptions } from './sampling';

/** D(x; sigma): the x0-prediction for a batch (sigma is the batch's noise level). */
export type Denoiser = (x: Float32Array, sigma: number) => Float32Array | PromiseLike<Float32Array>;
/** A model of another parameterisation, adapted by fromEps / fromV / fromScore. */
export type Model = Denoiser;

export interface SamplerOptions {
  /** Called after every denoiser evaluation of the main step: (step, sigma, x, denoised). */
  onStep?: (step: number, sigma: number, x: Float32Array, denoised: Float32Array) => void;
  /** Stops between steps with an AbortError (ScorefieldAbortError, code ERR_SCOREFIELD_ABORTED). */
  signal?: AbortSignal;
  /** Seed of the step noise (churn, SDE, Langevin); step i uses stream i + 1. */
  seed?: number | bigint;
  /** One seed per sample instead of `seed`. */
  seeds?: BigUint64Array | ReadonlyArray<number | bigint>;
  /** Per-sample dimension (B = x.length / dim); default: the whole x is one sample. */
  dim?: number;
  /** Receives a copy of x before the first step and after every step. */
  trajectory?: Float32Array[];
}

export interface HeunOptions extends SamplerOptions {
  /** EDM stochastic churn (Algorithm 2). */
  churn?: ChurnOptions;
}

export interface LangevinOptions extends SamplerOptions {
  /** Langevin steps per noise level (default 10). */
  stepsPerLevel?: number;
  /** Base step size: eta_i = epsilon (sigma_i / sigma_min)^2 (Song & Ermon 2019; default 2e-5). */
  epsilon?: number;
  /** Finish with one denoiser evaluation at the smallest level (default true). */
  denoiseLast?: boolean;
}


interface Ctx {
  denoiser: Denoiser;
  n: number;
  d: number | undefined;
  B: number;
  opts: SamplerOptions;
  seed: bigint;
  seeds: BigUint64Array | null;
  evals: number;
}

function context(denoiser: unknown, x: unknown, options: unknown): { ctx: Ctx; x: Float32Array } {
  if (typeof denoiser !== 'function') throw is.typeError('a function (x, sigma) => Float32Array', 'denoiser', denoiser);
  const xx = is.f32(x, 'x');
  const opts = is.options<SamplerOptions>(options, 'options');
  const d = opts.dim === undefined ? undefined : is.integer(opts.dim, 'options.dim', 1);
  if (d !== undefined && xx.length % d !== 0) throw new ScorefieldShapeError(`Expected a length divisible by options.dim ${d} for x but received ${is.describe(xx)}`);
  const B = d === undefined ? 1 : xx.length / d;
  if (opts.onStep !== undefined && typeof opts.onStep !== 'function') throw is.typeError('a function', 'options.onStep', opts.onStep);
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw is.typeError('an AbortSignal', 'options.signal', opts.signal);
  if (opts.trajectory !== undefined && !Array.isArray(opts.trajectory)) throw is.typeError('an array', 'options.trajectory', opts.trajectory);
  return {
    ctx: { denoiser: denoiser as Denoiser, n: xx.length, d, B, opts, seed: seed64(opts.seed, 'options.seed'), seeds: seedArray(opts.seeds, B, 'options.seeds'), evals: 0 },
    x: xx,
  };
}

function checkAbort(ctx: Ctx): void {
  const sig = ctx.opts.signal;
  if (sig?.aborted) throw new ScorefieldAbortError('The sampler was aborted', { cause: sig.reason });
}

async function denoise(ctx: Ctx, x: Float32Array, sigma: number): Promise<Float32Array> {
  checkAbort(ctx);
  let r: unknown;
  try {
    r = await raceAbort(ctx.denoiser(x, sigma), ctx.opts.signal, 'The sampler was aborted');
  } catch (err) {
    if (err instanceof ScorefieldAbortError) throw err;
    throw new ScorefieldDenoiserError(`Expected the denoiser to return a Float32Array at sigma ${sigma} but it threw: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  ctx.evals++;
  if (!(r instanceof Float32Array) || r.length !== ctx.n) {
    throw new ScorefieldDenoiserError(`Expected the denoiser to return a Float32Array of length ${ctx.n} at sigma ${sigma} but received ${is.describe(r)}`);
  }
  for (let i = 0; i < r.length; i++) {
    // NaN or Infinity would flow silently into every later step and the result
    if (!Number.isFinite(r[i])) {
      throw new ScorefieldDenoiserError(`Expected the denoiser to return finite values at sigma ${sigma} but received ${r[i]} at index ${i}`);
    }
  }
  checkAbort(ctx);
  return r;
}

const noise = (ctx: Ctx, stream: number) => ({ seed: ctx.seed, seeds: ctx.seeds ?? undefined, stream });
const stepOpts = (ctx: Ctx) => (ctx.d === undefined ? {} : { dim: ctx.d });

async function odeLoop(heun: boolean, denoiser: unknown, x0: unknown, sigmas: unknown, options: unknown): Promise<Float32Array> {
  const { ctx, x: input } = context(denoiser, x0, options);
  const s = checkSigmas(sigmas);
  const o = ctx.opts as HeunOptions;
  const { sChurn, sTmin, sTmax, sNoise } = churnOf(o.churn, 'options.churn');
  const n = s.length - 1;
  let x: Float32Array = input.slice();
  o.trajectory?.push(x.slice());
  for (let i = 0; i < n; i++) {
    let sigma = s[i];
    const next = s[i + 1];
    const gamma = sChurn > 0 && sigma >= sTmin && sigma <= sTmax ? Math.min(sChurn / n, Math.SQRT2 - 1) : 0;
    if (gamma > 0) {
      const hat = sigma * (1 + gamma);
      x = churnStep(x, sigma, hat, { ...stepOpts(ctx), noise: noise(ctx, i + 1), sNoise });
      sigma = hat;
    }
    const D = await denoise(ctx, x, sigma);
    o.onStep?.(i, sigma, x, D);
    const xp = eulerStep(x, D, sigma, next, stepOpts(ctx));
    if (heun && next > 0) {
      const D2 = await denoise(ctx, xp, next);
      x = heunStep(x, D, xp, D2, sigma, next, stepOpts(ctx));
    } else {
      x = xp;
    }
    o.trajectory?.push(x.slice());
  }
  return x;
}

/** Euler's method on the probability-flow ODE over `sigmas` (n steps, n evaluations). */
export function sampleEuler(denoiser: Denoiser, x: Float32Array, sigmas: ArrayLike<number>, options: HeunOptions = {}): Promise<Float32Array> {
  return odeLoop(false, denoiser, x, sigmas, options);
}

/**
 * Heun's method (EDM Algorithm 1, with Algorithm 2's churn when options.churn is set):
 * n steps cost 2n - 1 evaluations, the step onto 0 being Euler's.
 */
export function sampleHeun(denoiser: Denoiser, x: Float32Array, sigmas: ArrayLike<number>, options: HeunOptions = {}): Promise<Float32Array> {
  return odeLoop(true, denoiser, x, sigmas, options);
}

/** Euler-Maruyama on the reverse SDE in s; the step onto 0 returns the denoised value. */
export async function sampleEulerMaruyama(denoiser: Denoiser, x0: Float32Array, sigmas: ArrayLike<number>, options: SamplerOptions = {}): Promise<Float32Array> {
  const { ctx, x: input } = context(denoiser, x0, options);
  const s = checkSigmas(sigmas);
  let x: Float32Array = input.slice();
  ctx.opts.trajectory?.push(x.slice());
  for (let i = 0; i + 1 < s.length; i++) {
    const D = await denoise(ctx, x, s[i]);
    ctx.opts.onStep?.(i, s[i], x, D);
    x = s[i + 1] === 0 ? D.slice() : eulerMaruyamaStep(x, D, s[i], s[i + 1], { ...stepOpts(ctx), noise: noise(ctx, i + 1) });
    ctx.opts.trajectory?.push(x.slice());
  }
  return x;
}

/**
 * Annealed Langevin dynamics (Song & Ermon 2019) over the positive levels of `sigmas`:
 * stepsPerLevel steps of x + eta score + sqrt(2 eta) z with eta = epsilon (sigma / sigma_min)^2.
 */
export async function sampleLangevin(denoiser: Denoiser, x0: Float32Array, sigmas: ArrayLike<number>, options: LangevinOptions = {}): Promise<Float32Array> {
  const { ctx, x: input } = context(denoiser, x0, options);
  const s = checkSigmas(sigmas);
  const o = ctx.opts as LangevinOptions;
  const steps = o.stepsPerLevel === undefined ? 10 : is.integer(o.stepsPerLevel, 'options.stepsPerLevel', 1, 1e6);
  const eps = o.epsilon === undefined ? 2e-5 : is.scalar(o.epsilon, 'options.epsilon', 'positive');
  const levels = Array.from(s).filter((v) => v > 0);
  const sMin = levels[levels.length - 1];
  let x: Float32Array = input.slice();
  o.trajectory?.push(x.slice());
  let k = 0;
  for (let i = 0; i < levels.length; i++) {
    const eta = eps * (levels[i] / sMin) ** 2;
    for (let j = 0; j < steps; j++, k++) {
      const D = await denoise(ctx, x, levels[i]);
      o.onStep?.(k, levels[i], x, D);
      x = langevinStep(x, D, levels[i], eta, { ...stepOpts(ctx), noise: noise(ctx, k + 1) });
    }
    o.trajectory?.push(x.slice());
  }
  if (o.denoiseLast !== false) x = (await denoise(ctx, x, sMin)).slice();
  return x;
}

function adapt(from: 'eps' | 'v' | 'score', model: unknown): Denoiser {
  if (typeof model !== 'function') throw is.typeError('a function (x, sigma) => Float32Array', 'model', model);
  return async (x, sigma) => {
    const y = await (model as Model)(x, sigma);
    if (!(y instanceof Float32Array) || y.length !== x.length) {
      throw new ScorefieldDenoiserError(`Expected the model to return a Float32Array of length ${x.length} but received ${is.describe(y)}`);
    }
    return convert(from, 'x0', y, x, 1, sigma);
  };
}

/** Adapts an eps-prediction model (x = x0 + sigma eps) into a denoiser: D = x - sigma eps. */
export const fromEps = (model: Model): Denoiser => adapt('eps', model);
/** Adapts a v-prediction model (alpha = 1): D = (x - sigma v) / (1 + sigma^2). */
export const fromV = (model: Model): Denoiser => adapt('v', model);
/** Adapts a score model: D = x + sigma^2 score. */
export const fromScore = (model: Model): Denoiser => adapt('score', model);

/**
 * Runs a model trained on a VP (or any alpha/sigma) schedule through the samplers, which work
 * in the scaled variables of docs/math.md: xs = x / alpha, s = sigma / alpha, where every family is
 * the VE ODE dxs/ds = (xs - D(xs; s)) / s. The model is called as model(x_t, t) with
 * x_t = alpha(t) xs and t = schedule.tOfScaledSigma(s), and returns a `parameterization`
 * output ('eps', 'x0', 'v' or 'score' at (x_t, alpha, sigma)).
 */
export function fromSchedule(schedule: Schedule, model: (x: Float32Array, t: number) => Float32Array | PromiseLike<Float32Array>, parameterization: Parameterization): Denoiser {
  if (typeof model !== 'function') throw is.typeError('a function (x, t) => Float32Array', 'model', model);
  if (!schedule || typeof schedule.tOfScaledSigma !== 'function') throw is.typeError('a schedule', 'schedule', schedule);
  return async (xs, s) => {
    const t = schedule.tOfScaledSigma(s);
    const alpha = schedule.alpha(t);
    const sigma = schedule.sigma(t);
    const xt = xs.map((v) => v * alpha);
    const y = await model(xt, t);
    if (!(y instanceof Float32Array) || y.length !== xs.length) {
      throw new ScorefieldDenoiserError(`Expected the model to return a Float32Array of length ${xs.length} but received ${is.describe(y)}`);
    }
    return parameterization === 'x0' ? y.slice() : convert(parameterization, 'x0', y, xt, alpha, sigma);
  };
}
