/**
 * Batched Gaussian score targets (docs/math.md section 1). Arrays are row-major B x d
 * Float32Arrays; alpha and sigma are one number for the batch or a Float32Array with one
 * value per sample (which fixes B; d = length / B). Results go into `out` when given
 * (zero-copy; `out` may be the very same view as an elementwise input, never a partial
 * overlap nor an overlap with a per-sample array: ERR_SCOREFIELD_ALIAS, checked natively)
 * and into a new Float32Array otherwise. Inputs are never written.
 *
 * Every function has an `...Async` form that runs on the native thread pool and keeps
 * its buffers referenced until it settles; do not transfer or detach them meanwhile.
 */
import { ScorefieldShapeError } from './errors';
import * as is from './is';
import { native, operation } from './native';
import * as alloc from './alloc';

/** The four model parameterisations of docs/math.md. */
export type Parameterization = 'eps' | 'x0' | 'v' | 'score';
const PARAMS: readonly Parameterization[] = ['eps', 'x0', 'v', 'score'];

/** One value for the whole batch, or a Float32Array of length B (per sample). */
/**
 * A per-sample coefficient: one number for the whole batch, or one value per sample (a
 * Float32Array is read in place; a Float64Array or an array of numbers is converted to float32).
 */
export type PerSample = number | Float32Array | Float64Array | readonly number[];

interface AffinePlan {
  out: Float32Array;
  u: Float32Array;
  w: Float32Array;
  B: number;
  d: number;
  a: is.Coefficient;
  b: is.Coefficient;
}

function planAffine(
  names: [string, string, string, string],
  u: unknown,
  w: unknown,
  a: unknown,
  b: unknown,
  out: unknown,
  domains: [is.Domain, is.Domain],
): AffinePlan {
  const [un, wn, an, bn] = names;
  const uu = is.f32(u, un);
  const ww = is.f32(w, wn, uu.length);
  const aa = is.coefficient(a, an, domains[0]);
  const bb = is.coefficient(b, bn, domains[1]);
  const { B, d } = is.batchShape(uu.length, [
    [an, aa],
    [bn, bb],
  ]);
  const o = out === undefined ? alloc.f32(uu.length, 'out') : is.f32(out, 'out', uu.length);
  return { out: o, u: uu, w: ww, B, d, a: aa, b: bb };
}

type AffineOp = 'perturb' | 'conditionalScore' | 'velocityTarget';

/** An elementwise operation out = f(u, w; a, b), defined once (sync and async forms derived). */
const affine = <A extends unknown[]>(op: AffineOp, planOf: (...args: A) => AffinePlan) =>
  operation(planOf, (p, async) => native()[op](p.out, p.u, p.w, p.B, p.d, p.a, p.b, async), (p) => p.out);

const perturbOp = affine('perturb', (x0: Float32Array, eps: Float32Array, alpha: PerSample, sigma: PerSample, out?: Float32Array) =>
  planAffine(['x0', 'eps', 'alpha', 'sigma'], x0, eps, alpha, sigma, out, ['finite', 'nonnegative']),
);
/** Forward noising `x = alpha * x0 + sigma * eps`. */
export const perturb = perturbOp.sync;
/** Async form of {@link perturb}. */
export const perturbAsync = perturbOp.async;

const scoreOp = affine('conditionalScore', (x: Float32Array, x0: Float32Array, alpha: PerSample, sigma: PerSample, out?: Float32Array) =>
  planAffine(['x', 'x0', 'alpha', 'sigma'], x, x0, alpha, sigma, out, ['finite', 'positive']),
);
/**
 * The conditional score `grad_x log p(x | x0) = -(x - alpha * x0) / sigma^2` (the denoising
 * score matching target). `x - alpha*x0` is formed with one rounding (fused multiply-add).
 */
export const conditionalScore = scoreOp.sync;
/** Async form of {@link conditionalScore}. */
export const conditionalScoreAsync = scoreOp.async;

const velocityOp = affine('velocityTarget', (x0: Float32Array, eps: Float32Array, dAlpha: PerSample, dSigma: PerSample, out?: Float32Array) =>
  planAffine(['x0', 'eps', 'dAlpha', 'dSigma'], x0, eps, dAlpha, dSigma, out, ['finite', 'finite']),
);
/**
 * Flow-matching velocity target `u = alpha'(t) * x0 + sigma'(t) * eps` (`eps - x0` for the
 * linear interpolant: `velocityTarget(x0, eps, -1, 1)`). Schedules give the derivatives.
 */
export const velocityTarget = velocityOp.sync;
/** Async form of {@link velocityTarget}. */
export const velocityTargetAsync = velocityOp.async;

interface ConvertPlan extends AffinePlan {
  from: number;
  to: number;
}

function planConvert(from: unknown, to: unknown, model: unknown, x: unknown, alpha: unknown, sigma: unknown, out: unknown): ConvertPlan {
  const f = PARAMS.indexOf(from as Parameterization);
  if (f < 0) throw is.typeError(`one of ${PARAMS.join(', ')}`, 'from', from);
  const t = PARAMS.indexOf(to as Parameterization);
  if (t < 0) throw is.typeError(`one of ${PARAMS.join(', ')}`, 'to', to);
  const p = planAffine(['modelOutput', 'x', 'alpha', 'sigma'], model, x, alpha, sigma, out, ['positive', 'positive']);
  return { ...p, from: f, to: t };
}

const convertOp = operation(
  (from: Parameterization, to: Parameterization, modelOutput: Float32Array, x: Float32Array, alpha: PerSample, sigma: PerSample, out?: Float32Array) =>
    planConvert(from, to, modelOutput, x, alpha, sigma, out),
  (p, async) => native().convert(p.from, p.to, p.out, p.u, p.w, p.B, p.d, p.a, p.b, async),
  (p) => p.out,
);
/**
 * Converts a model output between the eps-, x0-, v- and score-parameterisations at
 * `(x, alpha, sigma)` (docs/math.md table; v = alpha*eps - sigma*x0). alpha and sigma must be
 * positive. `out` may be `modelOutput` or `x` itself.
 */
export const convert = convertOp.sync;
/** Async form of {@link convert}. */
export const convertAsync = convertOp.async;

/** Named loss weightings lambda(sigma) (docs/math.md section 1). */
export type DsmWeighting = 'uniform' | 'sigma2' | 'edm' | 'snr';
const WEIGHTINGS: readonly DsmWeighting[] = ['uniform', 'sigma2', 'edm', 'snr'];

export interface DsmLossOptions {
  /**
   * Per-sample weight lambda_i: a name, one number, or a Float32Array of length B.
   * `'uniform'` (default) 1; `'sigma2'` sigma^2 (turns the score loss into the eps MSE);
   * `'edm'` (sigma^2 + sigmaData^2) / (sigma * sigmaData)^2 (Karras et al. 2022, for
   * denoiser outputs); `'snr'` alpha^2 / sigma^2. Named weightings other than uniform need
   * `sigma`.
   */
  weight?: DsmWeighting | number | Float32Array;
  /** Noise level(s) for named weightings. */
  sigma?: PerSample;
  /** Signal scale(s) for `'snr'`; default 1. */
  alpha?: PerSample;
  /** EDM's sigma_data; default 0.5. */
  sigmaData?: number;
  /** Per-sample dimension; needed only when no per-sample array fixes the batch size. */
  dim?: number;
  /** Where to write the gradient (may be `prediction` itself). */
  gradOut?: Float32Array;
  /** Compute the gradient (default true; ignored when gradOut is given). */
  grad?: boolean;
}

export interface DsmLossResult {
  /** `(1/B) sum_i lambda_i ||prediction_i - target_i||^2`, summed in double precision. */
  loss: number;
  /** `dL/dprediction = (2 lambda_i / B)(prediction_i - target_i)`; undefined when grad: false. */
  grad: Float32Array | undefined;
}

interface LossPlan {
  pred: Float32Array;
  target: Float32Array;
  B: number;
  d: number;
  weight: is.Coefficient;
  grad: Float32Array | null;
}

function weightArray(B: number, f: (i: number) => number): Float32Array {
  const w = alloc.f32(B, 'the weights');
  for (let i = 0; i < B; i++) w[i] = f(i);
  return w;
}

function planLoss(prediction: unknown, target: unknown, options: unknown): LossPlan {
  const pred = is.f32(prediction, 'prediction');
  const tgt = is.f32(target, 'target', pred.length);
  const o = is.options<DsmLossOptions>(options, 'options');
  const weight = o.weight ?? 'uniform';
  const named = typeof weight === 'string';
  if (named && !WEIGHTINGS.includes(weight as DsmWeighting)) {
    throw is.typeError(`one of ${WEIGHTINGS.join(', ')}, a number or a Float32Array`, 'options.weight', weight);
  }
  const needsSigma = named && weight !== 'uniform';
  const sigma = needsSigma ? is.coefficient(o.sigma, 'options.sigma', 'positive') : undefined;
  const alpha = weight === 'snr' && o.alpha !== undefined ? is.coefficient(o.alpha, 'options.alpha', 'finite') : 1;
  const sigmaData = weight === 'edm' && o.sigmaData !== undefined ? is.scalar(o.sigmaData, 'options.sigmaData', 'positive') : 0.5;
  const w = named ? undefined : is.coefficient(weight, 'options.weight', 'nonnegative');
  const { B, d } = is.batchShape(
    pred.length,
    [
      ['options.weight', w],
      ['options.sigma', sigma],
      ['options.alpha', alpha],
    ],
    { name: 'options.dim', value: o.dim },
  );
  if (B === 1 && o.dim === undefined && !(w instanceof Float32Array) && !(sigma instanceof Float32Array) && !(alpha instanceof Float32Array) && pred.length > 0) {
    // Nothing says how the data splits into samples; the mean over the batch needs B.
    throw new ScorefieldShapeError(
      'Expected options.dim or a per-sample Float32Array (weight, sigma or alpha) for options but received neither, so the batch size is unknown',
    );
  }
  const at = (c: is.Coefficient | undefined, i: number) => (c instanceof Float32Array ? c[i] : (c as number));
  let lambda: is.Coefficient;
  switch (named ? weight : 'explicit') {
    case 'uniform':
      lambda = 1;
      break;
    case 'sigma2':
      lambda = typeof sigma === 'number' ? sigma * sigma : weightArray(B, (i) => at(sigma, i) ** 2);
      break;
    case 'edm': {
      const f = (s: number) => (s * s + sigmaData * sigmaData) / (s * sigmaData) ** 2;
      lambda = typeof sigma === 'number' ? f(sigma) : weightArray(B, (i) => f(at(sigma, i)));
      break;
    }
    case 'snr':
      lambda =
        typeof sigma === 'number' && typeof alpha === 'number'
          ? (alpha * alpha) / (sigma * sigma)
          : weightArray(B, (i) => at(alpha, i) ** 2 / at(sigma, i) ** 2);
      break;
    default:
      lambda = w as is.Coefficient;
  }
  let grad: Float32Array | null = null;
  if (o.gradOut !== undefined) {
    grad = is.f32(o.gradOut, 'options.gradOut', pred.length);
  } else if (o.grad !== false) {
    grad = alloc.f32(pred.length, 'the gradient');
  }
  return { pred, target: tgt, B, d, weight: lambda, grad };
}

const lossOp = operation(
  (prediction: Float32Array, target: Float32Array, options?: DsmLossOptions) => planLoss(prediction, target, options),
  (p, async) => native().dsmLoss(p.pred, p.target, p.B, p.d, p.weight, p.grad, async),
  (p, loss): DsmLossResult => ({ loss, grad: p.grad ?? undefined }),
);
/**
 * Denoising score matching loss `L = (1/B) sum_i lambda_i ||prediction_i - target_i||^2`
 * and its gradient with respect to `prediction`.
 */
export const dsmLoss = lossOp.sync;
/** Async form of {@link dsmLoss}. */
export const dsmLossAsync = lossOp.async;

export interface RandnOptions {
  /** 64-bit seed: a non-negative safe integer or a bigint below 2^64. */
  seed: number | bigint;
  /** Independent stream under the same seed, 0 .. 2^32-1 (default 0). */
  stream?: number;
  /** Per-sample dimension d (default: the whole buffer is one sample). */
  dim?: number;
  /** Index of the first sample (default 0): rows are samples offset, offset+1, ... */
  offset?: number;
}

interface RandnPlan {
  out: Float32Array;
  B: number;
  d: number;
  seed: bigint;
  stream: number;
  offset: number;
}

function planRandn(out: unknown, options: unknown): RandnPlan {
  const o = is.f32(typeof out === 'number' ? alloc.f32(is.integer(out, 'out', 0, 2 ** 32), 'out') : out, 'out');
  const opts = is.options<RandnOptions>(options, 'options');
  let seed: bigint;
  if (typeof opts.seed === 'bigint') {
    if (opts.seed < 0n || opts.seed >= 1n << 64n) throw is.rangeError('a seed from 0 to 2^64 - 1', 'options.seed', opts.seed);
    seed = opts.seed;
  } else {
    seed = BigInt(is.integer(opts.seed, 'options.seed'));
  }
  const stream = opts.stream === undefined ? 0 : is.integer(opts.stream, 'options.stream', 0, 2 ** 32 - 1);
  const offset = opts.offset === undefined ? 0 : is.integer(opts.offset, 'options.offset');
  const { B, d } = is.batchShape(o.length, [], { name: 'options.dim', value: opts.dim ?? (o.length || 1) });
  if (offset + B > Number.MAX_SAFE_INTEGER) throw is.rangeError('offset + batch below 2^53', 'options.offset', offset);
  return { out: o, B, d, seed, stream, offset };
}

const randnOp = operation(
  (out: Float32Array | number, options: RandnOptions) => planRandn(out, options),
  (p, async) => native().randn(p.out, p.B, p.d, p.seed, p.stream, p.offset, async),
  (p) => p.out,
);
/**
 * Fills `out` (or a new Float32Array of that length) with standard normal noise from a
 * counter-based generator (Philox4x32-10 + Box-Muller in double precision). Row i of a
 * B x dim buffer is sample `offset + i`, and its values depend only on
 * (seed, stream, offset + i, dim): never on batch size, thread count or SIMD level.
 */
export const randn = randnOp.sync;
/** Async form of {@link randn}. */
export const randnAsync = randnOp.async;
