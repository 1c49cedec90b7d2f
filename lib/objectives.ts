/**
 * Score-matching objectives of any model on a dataset (docs/math.md section 2): conditional score
 * matching (CSM, unbiased), score matching (SM) against the self-normalized estimate of the
 * true score, their model-independent gap, and the Hyvarinen objective. Every estimate is a
 * Monte-Carlo mean over `samples` draws (x0 from the data, x ~ p(. | x0)) with its standard
 * error; the draws depend only on (seed, draw index), never on the batch size, so two calls with
 * the same seed see the same (x0, x) pairs.
 *
 * Gaussian kernel: the model returns the score s(x) at (x, sigma); the conditional target is
 * -(x - alpha x0) / sigma^2 and the gap per draw is alpha^2 tr Cov(x0|x) / sigma^4. Poisson and
 * radial kernels: the model returns the kernel's field f(x) (the training target of
 * kernel.conditionalField, (x - x0)/tau; its population optimum is (x - E[x0|x])/tau); the gap
 * per draw is tr Cov(x0|x) / tau^2. The same identity CSM - SM = gap holds in both cases.
 */
import { raceAbort } from './abort';
import { ScorefieldAbortError, ScorefieldDenoiserError, ScorefieldShapeError, ScorefieldUnsupportedError } from './errors';
import { ReferenceSet } from './estimator';
import * as is from './is';
import { gaussian, kernelArg, type Kernel } from './kernels';
import { conditionalScore, perturb, randn } from './targets';
import * as alloc from './alloc';

/** A model: its score (Gaussian kernel) or field (other kernels) for a B x d batch at one noise level. */
export type ScoreModel = (x: Float32Array, sigma: number) => Float32Array | PromiseLike<Float32Array>;

export interface ObjectiveOptions {
  /** Noise level: sigma for the Gaussian kernel, the kernel's scale tau otherwise. */
  sigma: number;
  /** Signal scale of x = alpha x0 + sigma eps (Gaussian kernel only; default 1). */
  alpha?: number;
  kernel?: Kernel | 'gaussian';
  /** Number of (x0, x) draws. */
  samples: number;
  /** Seed of the draws (default 0). */
  seed?: number | bigint;
  /** Draws per model call (default 256); does not change the result. */
  batch?: number;
  /**
   * The set the SM target and the gap are estimated over (default: `data` itself, which makes
   * the estimate exact for the empirical distribution of `data`). A separate, smaller set shows
   * the bias of the ratio estimator.
   */
  reference?: ReferenceSet;
  /** Stops between batches; the promise rejects with a ScorefieldAbortError. */
  signal?: AbortSignal;
  /** Called after each batch with (draws done, total draws). */
  onProgress?: (done: number, total: number) => void;
  /** Also return the per-draw terms (Float64Array of `samples` values). */
  terms?: boolean;
}

export interface ObjectiveEstimate {
  /** Monte-Carlo mean over the draws. */
  value: number;
  /** Its standard error (sample standard deviation / sqrt(samples)). */
  stderr: number;
  samples: number;
  /** Per-draw terms, when `terms: true`. */
  terms?: Float64Array;
}

export interface ObjectiveComparison {
  csm: ObjectiveEstimate;
  sm: ObjectiveEstimate;
  gap: ObjectiveEstimate;
  /** CSM - SM - gap per draw: zero in expectation for every model. */
  difference: ObjectiveEstimate;
  /** The x draws (samples x d), when `terms: true`. */
  x?: Float32Array;
}

export interface HyvarinenOptions extends Omit<ObjectiveOptions, 'reference' | 'kernel'> {
  /**
   * 'exact-empirical': `model` is a ReferenceSet, whose empirical score and exact divergence
   * (docs/math.md: (alpha^2 tr Cov / sigma^2 - d) / sigma^2) are used. 'sliced-fd': `model` is any
   * function; div s(x) ~ v . (s(x + h v) - s(x - h v)) / (2h) averaged over `projections`
   * draws of v ~ N(0, I).
   */
  method: 'exact-empirical' | 'sliced-fd';
  /** Finite-difference step (default 1e-2 sigma). */
  h?: number;
  /** Random directions per draw (default 1). */
  projections?: number;
}

interface Plan {
  data: ReferenceSet;
  reference: ReferenceSet;
  kernel: Kernel;
  gaussian: boolean;
  sigma: number;
  alpha: number;
  samples: number;
  seed: number | bigint;
  batch: number;
  opts: Partial<ObjectiveOptions>;
}

function plan(data: unknown, options: unknown): Plan {
  if (!(data instanceof ReferenceSet)) throw is.typeError('a ReferenceSet', 'data', data);
  const o = is.options<ObjectiveOptions>(options, 'options');
  const sigma = is.scalar(o.sigma, 'options.sigma', 'positive');
  kernelArg(o.kernel, 'options.kernel');  // validates
  const kernel = o.kernel === undefined || o.kernel === 'gaussian' ? gaussian() : o.kernel;
  const isGauss = kernel.kind === 'gaussian';
  const alpha = o.alpha === undefined ? 1 : is.scalar(o.alpha, 'options.alpha', 'positive');
  if (!isGauss && alpha !== 1) throw new ScorefieldUnsupportedError(`Expected alpha = 1 for the ${kernel.kind} kernel but received ${alpha}`);
  const samples = is.integer(o.samples, 'options.samples', 1, 2 ** 32);
  const batch = o.batch === undefined ? 256 : is.integer(o.batch, 'options.batch', 1, 2 ** 24);
  const reference = o.reference === undefined ? data : o.reference;
  if (!(reference instanceof ReferenceSet)) throw is.typeError('a ReferenceSet', 'options.reference', reference);
  if (reference.dim !== data.dim) throw new ScorefieldShapeError(`Expected options.reference of dim ${data.dim} but received dim ${reference.dim}`);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw is.typeError('an AbortSignal', 'options.signal', o.signal);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw is.typeError('a function', 'options.onProgress', o.onProgress);
  return { data, reference, kernel, gaussian: isGauss, sigma, alpha, samples, seed: o.seed ?? 0, batch, opts: o };
}

/** A stateless 32-bit mix (splitmix-style finaliser). */
function mix32(v: number): number {
  v = Math.imul(v ^ (v >>> 16), 0x7feb352d);
  v = Math.imul(v ^ (v >>> 15), 0x846ca68b);
  return (v ^ (v >>> 16)) >>> 0;
}

/** Row index of draw i: uniform on [0, N), a function of (seed, i) only (53 random bits). */
function rowIndices(seed: number | bigint, start: number, n: number, N: number): Uint32Array {
  const s = BigInt(seed);
  const lo = Number(s & 0xffffffffn), hi = Number((s >> 32n) & 0xffffffffn);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const g = start + i;
    const base = mix32(lo ^ mix32(hi ^ mix32((g % 0x100000000) + 0x9e3779b9) ^ Math.floor(g / 0x100000000)));
    const a = mix32(base ^ 0x85ebca6b) >>> 5, b = mix32(base ^ 0xc2b2ae35) >>> 6;
    out[i] = Math.min(N - 1, Math.floor(((a * 67108864 + b) / 9007199254740992) * N));
  }
  return out;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ScorefieldAbortError('The objective was aborted', { cause: signal.reason });
}

async function callModel(model: ScoreModel, x: Float32Array, sigma: number, what: string, signal?: AbortSignal): Promise<Float32Array> {
  let r: unknown;
  try {
    r = await raceAbort(model(x, sigma), signal, 'The objective was aborted');
  } catch (err) {
    if (err instanceof ScorefieldAbortError) throw err;
    throw new ScorefieldDenoiserError(`Expected the model to return ${what} at sigma ${sigma} but it threw: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  if (!(r instanceof Float32Array) || r.length !== x.length) {
    throw new ScorefieldDenoiserError(`Expected the model to return ${what} (a Float32Array of length ${x.length}) at sigma ${sigma} but received ${is.describe(r)}`);
  }
  for (let i = 0; i < r.length; i++) {
    if (!Number.isFinite(r[i])) {
      throw new ScorefieldDenoiserError(`Expected the model to return finite values at sigma ${sigma} but received ${r[i]} at index ${i}`);
    }
  }
  return r;
}

/** One batch of draws: x0 rows, x ~ p(. | x0), and the conditional target. */
function draws(p: Plan, start: number, n: number): { x0: Float32Array; x: Float32Array; target: Float32Array } {
  const d = p.data.dim;
  const x0 = p.data.rows(rowIndices(p.seed, start, n, p.data.size));
  let x: Float32Array;
  if (p.gaussian) {
    const eps = randn(n * d, { seed: p.seed, stream: 0, dim: d, offset: start });
    x = perturb(x0, eps, p.alpha, p.sigma);
  } else {
    x = p.kernel.perturb(x0, p.sigma, { seed: p.seed, dim: d, offset: start });
  }
  const target = p.gaussian ? conditionalScore(x, x0, p.alpha, p.sigma) : p.kernel.conditionalField(x, x0, p.sigma);
  return { x0, x, target };
}

function summarise(terms: Float64Array, keep: boolean): ObjectiveEstimate {
  const n = terms.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += (terms[i] - mean) / (i + 1);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (terms[i] - mean) ** 2;
  const stderr = n > 1 ? Math.sqrt(ss / (n - 1) / n) : Infinity;
  return keep ? { value: mean, stderr, samples: n, terms } : { value: mean, stderr, samples: n };
}

const sqdist = (a: Float32Array, b: Float32Array, i: number, d: number) => {
  let s = 0;
  for (let k = 0; k < d; k++) {
    const t = a[i * d + k] - b[i * d + k];
    s += t * t;
  }
  return s;
};

const sqnorm = (a: Float32Array, i: number, d: number) => {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[i * d + k] * a[i * d + k];
  return s;
};

/** The one pass behind csm, sm, gap and evaluate. */
async function pass(model: ScoreModel | null, p: Plan, need: { csm: boolean; sm: boolean; gap: boolean }) {
  if (model !== null && typeof model !== 'function') throw is.typeError('a function (x, sigma) => Float32Array', 'model', model);
  const d = p.data.dim;
  const out = {
    x: p.opts.terms ? alloc.f32(p.samples * d, 'the samples') : null,
    csm: new Float64Array(need.csm ? p.samples : 0),
    sm: new Float64Array(need.sm ? p.samples : 0),
    gap: new Float64Array(need.gap ? p.samples : 0),
  };
  const gapScale = p.gaussian ? (p.alpha * p.alpha) / p.sigma ** 4 : 1 / p.sigma ** 2;
  for (let start = 0; start < p.samples; start += p.batch) {
    checkAbort(p.opts.signal);
    const n = Math.min(p.batch, p.samples - start);
    const { x, target } = draws(p, start, n);
    out.x?.set(x, start * d);
    const s = model ? await callModel(model, x, p.sigma, p.gaussian ? 'the score' : 'the field', p.opts.signal) : null;
    if (need.sm || need.gap) {
      const est = await p.reference.estimateAsync(x, {
        sigma: p.sigma,
        alpha: p.gaussian ? p.alpha : undefined,
        kernel: p.kernel,
        outputs: p.gaussian ? ['score', 'traceCov'] : ['mean', 'traceCov'],
      });
      let smTarget: Float32Array;
      if (p.gaussian) {
        smTarget = est.score!;
      } else {
        smTarget = alloc.f32(n * d, 'the targets');
        for (let i = 0; i < n * d; i++) smTarget[i] = (x[i] - est.mean![i]) / p.sigma;
      }
      for (let i = 0; i < n; i++) {
        if (need.sm) out.sm[start + i] = sqdist(smTarget, s!, i, d);
        if (need.gap) out.gap[start + i] = Math.max(0, est.traceCov![i]) * gapScale;
      }
    }
    if (need.csm) for (let i = 0; i < n; i++) out.csm[start + i] = sqdist(target, s!, i, d);
    checkAbort(p.opts.signal);
    p.opts.onProgress?.(start + n, p.samples);
  }
  return out;
}

/**
 * Conditional score matching: E ||grad log p(x | x0) - s(x)||^2 over (x0, x) pairs (x0 from
 * `data`, x ~ p(. | x0)). Unbiased for the CSM objective of `data`'s distribution.
 */
export async function csm(model: ScoreModel, data: ReferenceSet, options: ObjectiveOptions): Promise<ObjectiveEstimate> {
  const p = plan(data, options);
  const r = await pass(model, p, { csm: true, sm: false, gap: false });
  return summarise(r.csm, Boolean(p.opts.terms));
}

/**
 * Score matching: E ||score(x) - s(x)||^2 with score(x) the self-normalized estimate over
 * `options.reference` (default `data`), at the same x draws as {@link csm} with the same seed.
 */
export async function sm(model: ScoreModel, data: ReferenceSet, options: ObjectiveOptions): Promise<ObjectiveEstimate> {
  const p = plan(data, options);
  const r = await pass(model, p, { csm: false, sm: true, gap: false });
  return summarise(r.sm, Boolean(p.opts.terms));
}

/** The model-independent constant CSM - SM = E[alpha^2 tr Cov(x0|x) / sigma^4] (Gaussian), from the same draws. */
export async function gap(data: ReferenceSet, options: ObjectiveOptions): Promise<ObjectiveEstimate> {
  const p = plan(data, options);
  const r = await pass(null, p, { csm: false, sm: false, gap: true });
  return summarise(r.gap, Boolean(p.opts.terms));
}

/** CSM, SM, the gap and their per-draw difference CSM - SM - gap, from one pass over the draws. */
export async function evaluate(model: ScoreModel, data: ReferenceSet, options: ObjectiveOptions): Promise<ObjectiveComparison> {
  const p = plan(data, options);
  const r = await pass(model, p, { csm: true, sm: true, gap: true });
  const diff = r.csm.map((v, i) => v - r.sm[i] - r.gap[i]);
  const keep = Boolean(p.opts.terms);
  const result: ObjectiveComparison = { csm: summarise(r.csm, keep), sm: summarise(r.sm, keep), gap: summarise(r.gap, keep), difference: summarise(diff, keep) };
  if (r.x) result.x = r.x;
  return result;
}

/**
 * The Hyvarinen objective J(s) = E[1/2 ||s(x)||^2 + div s(x)] over x ~ p_sigma (x0 from `data`,
 * Gaussian kernel), exact for the empirical score of a ReferenceSet or by sliced finite
 * differences for any model.
 */
export async function hyvarinen(model: ScoreModel | ReferenceSet, data: ReferenceSet, options: HyvarinenOptions): Promise<ObjectiveEstimate> {
  const o = is.options<HyvarinenOptions>(options, 'options');
  if (o.method !== 'exact-empirical' && o.method !== 'sliced-fd') throw is.typeError("'exact-empirical' or 'sliced-fd'", 'options.method', o.method);
  if ((o as { kernel?: unknown }).kernel !== undefined && (o as { kernel?: unknown }).kernel !== 'gaussian') {
    throw new ScorefieldUnsupportedError('Expected the Gaussian kernel for the Hyvarinen objective but received another kernel');
  }
  const p = plan(data, { ...o, kernel: undefined, reference: undefined });
  const d = data.dim;
  const terms = new Float64Array(p.samples);
  if (o.method === 'exact-empirical') {
    if (!(model instanceof ReferenceSet)) throw is.typeError("a ReferenceSet (the empirical score) for method 'exact-empirical'", 'model', model);
    if (model.dim !== d) throw new ScorefieldShapeError(`Expected a model set of dim ${d} but received dim ${model.dim}`);
  } else if (typeof model !== 'function') {
    throw is.typeError("a function (x, sigma) => Float32Array for method 'sliced-fd'", 'model', model);
  }
  const h = o.h === undefined ? 1e-2 * p.sigma : is.scalar(o.h, 'options.h', 'positive');
  const projections = o.projections === undefined ? 1 : is.integer(o.projections, 'options.projections', 1, 1024);
  for (let start = 0; start < p.samples; start += p.batch) {
    checkAbort(o.signal);
    const n = Math.min(p.batch, p.samples - start);
    const { x } = draws(p, start, n);
    if (model instanceof ReferenceSet) {
      const est = await model.estimateAsync(x, { sigma: p.sigma, alpha: p.alpha, outputs: ['score', 'divergence'] });
      for (let i = 0; i < n; i++) terms[start + i] = 0.5 * sqnorm(est.score!, i, d) + est.divergence![i];
    } else {
      const s = await callModel(model, x, p.sigma, 'the score', o.signal);
      const div = new Float64Array(n);
      for (let j = 0; j < projections; j++) {
        const v = randn(n * d, { seed: p.seed, stream: 1 + j, dim: d, offset: start });
        const xp = alloc.f32(n * d, 'the probes'), xm = alloc.f32(n * d, 'the probes');
        for (let k = 0; k < n * d; k++) {
          xp[k] = x[k] + h * v[k];
          xm[k] = x[k] - h * v[k];
        }
        const sp = await callModel(model, xp, p.sigma, 'the score', o.signal);
        const sn = await callModel(model, xm, p.sigma, 'the score', o.signal);
        for (let i = 0; i < n; i++) {
          let dot = 0;
          for (let k = 0; k < d; k++) dot += v[i * d + k] * (sp[i * d + k] - sn[i * d + k]);
          div[i] += dot / (2 * h) / projections;
        }
      }
      for (let i = 0; i < n; i++) terms[start + i] = 0.5 * sqnorm(s, i, d) + div[i];
    }
    checkAbort(o.signal);
    o.onProgress?.(start + n, p.samples);
  }
  return summarise(terms, Boolean(o.terms));
}
