/**
 * The self-normalized estimator engine (docs/math.md section 2): the ideal denoiser, the score
 * of the noised empirical distribution and its diagnostics over a reference set, in one
 * fused native pass that never materialises the B x N matrix.
 */
import { ScorefieldAbortError, ScorefieldShapeError, ScorefieldUnsupportedError } from './errors';
import { sampleRun, type SampleOptions } from './sampling';
import * as is from './is';
import { isGaussian, kernelArg, type Kernel } from './kernels';
import { callAsync, callSync, native, operation, type KernelArg, type NativeState, type QueryRequest, type RefHandle } from './native';
import type { PerSample } from './targets';
import * as alloc from './alloc';

/** What one estimate call did (ReferenceSet.estimateWithStats). */
export interface EstimateStats {
  /** Pairs the fused pass recomputed from exact differences (precision policy). */
  refined: number;
  /** Working memory of the call (bytes). */
  scratchBytes: number;
  /** Query-reference pairs of the call (B x N). */
  pairs: number;
  /** Pairs computed by the fused full pass. */
  densePairs: number;
  /** Pairs computed exactly by the pruned pass. */
  exactPairs: number;
  /** Queries the pruned pass finished (the rest ran the full pass). */
  sparseQueries: number;
  /**
   * Tiles of references (per block of queries) the pruned pass bounded densely with its full
   * projection, because its first level left too many pairs to refine one by one (queries far
   * from every reference, such as held-out digits; docs/numerics.md, "Wide tiles").
   */
  wideTiles: number;
  /**
   * Blocks of up to 32 queries the pruned pass did not attempt: in a request of one sigma and
   * one alpha, its first two blocks left no query to prune (every one went to the full pass,
   * as at sigma 0.5-2 on MNIST), so the other blocks went straight to the full pass
   * (docs/numerics.md, "Probe blocks").
   */
  skippedBlocks: number;
  /**
   * Rows of references (counted once per block of up to 32 queries) the fused pass's bf16
   * screen judged, and those whose float32 dot products it skipped because their weight was
   * certain to be exactly 0 for every query of the block (docs/numerics.md, "The bf16
   * screen"); 0 where the screen does not run.
   */
  screenedRows: number;
  screenSkippedRows: number;
  /** Share of the pairs never computed: 1 - (densePairs + exactPairs) / pairs. */
  prunedShare: number;
  /**
   * Thread time (summed over threads) spent deciding which pairs to recompute precisely (the
   * fused pass) and which to compute at all (the pruned pass's bounds and selection, and the
   * fused pass's bf16 screen, including its bf16 dot products).
   */
  decideSeconds: number;
}

/** What `estimate` can compute per query. */
export type EstimateOutput = 'mean' | 'score' | 'logDensity' | 'ess' | 'traceCov' | 'divergence';
const OUTPUTS: readonly EstimateOutput[] = ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'];
const PER_DIM: ReadonlySet<EstimateOutput> = new Set(['mean', 'score']);

export interface EstimateOptions<O extends EstimateOutput = 'mean' | 'score'> {
  /** Noise level (the kernel's scale): one number or a Float32Array of length B. Must be > 0. */
  sigma: PerSample;
  /** Signal scale alpha of x = alpha x0 + sigma eps: number or per-sample; default 1. */
  alpha?: PerSample;
  /** The kernel (default gaussian()). */
  kernel?: Kernel | 'gaussian';
  /** What to compute; default ['mean', 'score']. The result has exactly these fields. */
  outputs?: readonly O[];
  /** Buffers to write the outputs into (B x dim for mean and score, B for the others). */
  out?: Partial<Record<EstimateOutput, Float32Array>>;
}

/**
 * Per query: `mean` E[x0 | x] (the ideal denoiser), `score` (alpha mean - x)/sigma^2,
 * `logDensity` log p_sigma(x) of the smoothed empirical distribution (with the kernel's
 * normalising constant, minus log N), `ess` 1/sum w^2 in [1, N], `traceCov` tr Cov(x0 | x),
 * `divergence` of the score, (alpha^2 traceCov / sigma^2 - d) / sigma^2.
 */
export type EstimateResult<O extends EstimateOutput = 'mean' | 'score'> = { [K in O]: Float32Array };

/**
 * The serialisable state of the estimator over a shard of references, per query: the
 * maximum log-weight, the sums of the rescaled weights, of their squares and of weight times
 * ||y - origin||^2, and the weighted sums of y - origin. States of disjoint shards merge
 * exactly (`ReferenceSet.mergePartials`); plain object of Float64Arrays, so it survives
 * structuredClone / postMessage (and JSON after Array.from).
 */
export type PartialState = NativeState;

export interface PartialOptions extends Omit<EstimateOptions, 'outputs' | 'out'> {
  /** First reference row of the shard (default 0). */
  start?: number;
  /** One past the last reference row (default size). */
  end?: number;
  /** Keep the weighted sums (needed for mean, score, traceCov, divergence); default true. */
  weighted?: boolean;
}

interface Query {
  x: Float32Array;
  B: number;
  alpha: is.Coefficient;
  sigma: is.Coefficient;
  kernel: KernelArg;
}

function query(x: unknown, dim: number, options: unknown, xName = 'x'): Query & { o: Partial<EstimateOptions<EstimateOutput>> } {
  const xx = is.f32(x, xName);
  if (xx.length === 0) throw new ScorefieldShapeError(`Expected a non-empty Float32Array for ${xName} but received ${is.describe(xx)}`);
  if (xx.length % dim !== 0) {
    throw new ScorefieldShapeError(`Expected a length divisible by dim ${dim} for ${xName} but received ${is.describe(xx)}`);
  }
  const o = is.options<EstimateOptions<EstimateOutput>>(options, 'options');
  if (o.sigma === undefined) throw is.typeError('a number or a Float32Array of per-sample values', 'options.sigma', undefined);
  const sigma = is.coefficient(o.sigma, 'options.sigma', 'positive');
  const alpha = o.alpha === undefined ? 1 : is.coefficient(o.alpha, 'options.alpha', 'finite');
  const B = xx.length / dim;
  is.batchShape(xx.length, [
    ['options.sigma', sigma],
    ['options.alpha', alpha],
  ], { name: 'dim', value: dim });
  const kernel = kernelArg(o.kernel);
  if (!isGaussian(kernel) && alpha !== 1) {
    throw new ScorefieldShapeError(`Expected no options.alpha (alpha = 1) for options.alpha with a non-Gaussian kernel but received ${is.describe(alpha)}`);
  }
  return { x: xx, B, alpha, sigma, kernel, o };
}

function outputBuffers(outputs: readonly EstimateOutput[], out: unknown, B: number, dim: number) {
  const given = is.options<Record<EstimateOutput, Float32Array>>(out, 'options.out');
  for (const k of Object.keys(given)) {
    if (!OUTPUTS.includes(k as EstimateOutput)) throw is.typeError(`one of ${OUTPUTS.join(', ')}`, `options.out key`, k);
    if (!outputs.includes(k as EstimateOutput)) {
      throw is.typeError(`an output listed in options.outputs`, `options.out.${k}`, k);
    }
  }
  const bufs: Partial<Record<EstimateOutput, Float32Array>> = {};
  for (const k of outputs) {
    const len = PER_DIM.has(k) ? B * dim : B;
    bufs[k] = given[k] === undefined ? alloc.f32(len, `the output ${k}`) : is.f32(given[k], `options.out.${k}`, len);
  }
  return bufs;
}

function outputList(v: unknown, kernel: KernelArg = 0): EstimateOutput[] {
  if (v === undefined) return isGaussian(kernel) ? ['mean', 'score'] : ['mean'];
  if (!isGaussian(kernel) && Array.isArray(v) && v.some((k) => k === 'score' || k === 'divergence')) {
    throw new ScorefieldUnsupportedError(`Expected outputs without score or divergence for options.outputs with a non-Gaussian kernel (use mean: the field is (x - mean) / sigma) but received ${v.join(', ')}`);
  }
  if (!Array.isArray(v) || v.length === 0) throw is.typeError(`a non-empty array of ${OUTPUTS.join(', ')}`, 'options.outputs', v);
  for (const k of v) if (!OUTPUTS.includes(k)) throw is.typeError(`one of ${OUTPUTS.join(', ')}`, 'options.outputs[]', k);
  return [...new Set(v as EstimateOutput[])];
}

function resultOf<O extends EstimateOutput>(outputs: readonly EstimateOutput[], bufs: Partial<Record<EstimateOutput, Float32Array>>): EstimateResult<O> {
  const r: Record<string, Float32Array> = {};
  for (const k of outputs) r[k] = bufs[k]!;
  return r as EstimateResult<O>;
}

/**
 * @internal The validated query, outputs and output buffers of an estimate call against sets of
 * `dim` (the distributed set validates with the same rules as ReferenceSet).
 */
export function estimatePlan(x: unknown, dim: number, options: unknown) {
  const q = query(x, dim, options);
  const outputs = outputList(q.o.outputs, q.kernel);
  return { q, outputs };
}

/** @internal Whether any of these outputs needs the weighted sums. */
export function needsWeighted(outputs: readonly EstimateOutput[]): boolean {
  return outputs.some((o) => o !== 'logDensity' && o !== 'ess');
}

const CREATE = Symbol('create');

/** Options of a reference set's construction. */
export interface ReferenceSetOptions {
  /**
   * Also keep the rows interleaved in panels of 12 for the estimator's GEMMs (default true):
   * 5-9% faster at large sigma (measured on MNIST and d = 64 Gaussian data) for 4 N dim more
   * bytes. `false` keeps one copy of the rows; the results are the same bits either way.
   */
  panels?: boolean;
  /**
   * Also keep a bfloat16 copy of the rows for the fused pass's bf16 screen (docs/numerics.md,
   * "The bf16 screen"; default true): built only where the CPU has AVX512_BF16
   * (`capabilities().bf16Screen`), dim >= 128 and `panels` is on, for 2 N dim more bytes; up to
   * 1.6x faster at sigma 0.5-1 on MNIST. `false` saves the memory; the results are the same bits
   * either way.
   */
  screen?: boolean;
}

/**
 * A reference set Y of N points in `dim` dimensions, built once and reused across calls.
 * The data are copied (row-major N x dim Float32Array), centred on a per-coordinate offset
 * chosen so that the centring is exact, with row norms precomputed; the caller's array is
 * not kept. The set holds the rows twice (row-major, and interleaved in panels of 12 rows for
 * the estimator's GEMMs; `{ panels: false }` keeps one copy), so about 8 N dim bytes, plus a
 * bf16 copy (2 N dim bytes) where the CPU has AVX512_BF16 and dim >= 128 (`{ screen: false }`
 * leaves it out) and the pruning index of larger sets; `byteLength` is the memory it holds.
 */
export class ReferenceSet {
  /** Number of reference points N. */
  readonly size: number;
  /** Dimension d. */
  readonly dim: number;
  /** Bytes of native memory the set holds. */
  readonly byteLength: number;
  /** @internal */
  readonly handle: RefHandle;

  /** Builds a set from an N x dim row-major Float32Array (synchronously; see createAsync). */
  constructor(data: Float32Array, dim: number, options?: ReferenceSetOptions);
  /** @internal */
  constructor(data: Float32Array | typeof CREATE, dim: number, options?: ReferenceSetOptions, handle?: RefHandle);
  constructor(data: Float32Array | typeof CREATE, dim: number, options?: ReferenceSetOptions, handle?: RefHandle) {
    let h: RefHandle;
    if (data === CREATE) {
      h = handle!;
    } else {
      const { d, n, panels, screen } = ReferenceSet.check(data, dim, options);
      h = callSync(() => native().refBuild(data as Float32Array, n, d, false, panels, screen));
    }
    const info = native().refInfo(h);
    this.handle = h;
    this.size = info.size;
    this.dim = info.dim;
    this.byteLength = info.bytes;
  }

  /** @internal The request fields of a batch of queries against this set. */
  queries(q: Query): QueryRequest {
    return { ref: this.handle, x: q.x, batch: q.B, alpha: q.alpha, sigma: q.sigma, kernel: q.kernel };
  }

  private static check(data: unknown, dim: unknown, options: unknown): { n: number; d: number; panels: boolean; screen: boolean } {
    const d = is.integer(dim, 'dim', 1);
    const a = is.f32(data, 'data');
    if (a.length === 0) throw new ScorefieldShapeError(`Expected at least one reference point for data but received ${is.describe(a)}`);
    if (a.length % d !== 0) throw new ScorefieldShapeError(`Expected a length divisible by dim ${d} for data but received ${is.describe(a)}`);
    const o = is.options<ReferenceSetOptions>(options, 'options');
    if (o.panels !== undefined && typeof o.panels !== 'boolean') throw is.typeError('a boolean', 'options.panels', o.panels);
    if (o.screen !== undefined && typeof o.screen !== 'boolean') throw is.typeError('a boolean', 'options.screen', o.screen);
    return { n: a.length / d, d, panels: o.panels ?? true, screen: o.screen ?? true };
  }

  /** Builds a set off the main thread (O(N dim) on the thread pool). */
  static async createAsync(data: Float32Array, dim: number, options?: ReferenceSetOptions): Promise<ReferenceSet> {
    const { n, d, panels, screen } = ReferenceSet.check(data, dim, options);
    const h = await callAsync(() => native().refBuild(data, n, d, true, panels, screen));
    return new ReferenceSet(CREATE, d, undefined, h);
  }

  /** The rows at `indices` (exactly the values the set was built from), as a new indices.length x dim array. */
  rows(indices: Uint32Array | readonly number[]): Float32Array {
    if (!(indices instanceof Uint32Array) && !Array.isArray(indices)) throw is.typeError('a Uint32Array or an array of row indices', 'indices', indices);
    const idx = indices instanceof Uint32Array ? indices : Uint32Array.from(indices, (v, i) => is.integer(v, `indices[${i}]`, 0, 2 ** 32 - 1));
    const out = alloc.f32(idx.length * this.dim, 'the rows');
    callSync(() => native().refRows(this.handle, idx, out));
    return out;
  }

  /** The per-coordinate offset the rows are stored relative to (y = row + centre exactly). */
  get centre(): Float32Array {
    return native().refInfo(this.handle).centre;
  }

  /**
   * The estimator for B queries `x` (B x dim): by default the posterior mean (ideal
   * denoiser) and the score. Weights l_j = log p(x | y_j), softmax over j, online.
   */
  estimate<O extends EstimateOutput = 'mean' | 'score'>(x: Float32Array, options: EstimateOptions<O>): EstimateResult<O> {
    const r = estimateOp.sync(this, x, options);
    return resultOf<O>(r.plan.outputs, r.plan.bufs);
  }

  /** Async form of {@link estimate}: runs on the native pool, off the event loop. */
  async estimateAsync<O extends EstimateOutput = 'mean' | 'score'>(x: Float32Array, options: EstimateOptions<O>): Promise<EstimateResult<O>> {
    const r = await estimateOp.async(this, x, options);
    return resultOf<O>(r.plan.outputs, r.plan.bufs);
  }

  /**
   * Like estimate, also returning what the engine did: `refined` pairs recomputed precisely by
   * the fused pass, and for exact pruning (docs/numerics.md) the call's query-reference `pairs`,
   * the `densePairs` the fused full pass computed, the `exactPairs` the pruned pass computed,
   * the `sparseQueries` it finished, the `wideTiles` it bounded densely, the `skippedBlocks` it
   * did not attempt, and `prunedShare`, the
   * share of pairs never computed; `screenedRows` and `screenSkippedRows` count the bf16
   * screen's work.
   */
  estimateWithStats<O extends EstimateOutput = 'mean' | 'score'>(
    x: Float32Array,
    options: EstimateOptions<O>,
  ): { result: EstimateResult<O> } & EstimateStats {
    const { plan, stats: s } = estimateOp.sync(this, x, options);
    const prunedShare = s.pairs > 0 ? 1 - (s.densePairs + s.exactPairs) / s.pairs : 0;
    return { result: resultOf<O>(plan.outputs, plan.bufs), ...s, prunedShare };
  }

  /** @internal The validated plan of an estimate call. */
  plan(x: unknown, options: unknown) {
    const q = query(x, this.dim, options);
    const outputs = outputList(q.o.outputs, q.kernel);
    const bufs = outputBuffers(outputs, q.o.out, q.B, this.dim);
    return { q, outputs, bufs };
  }

  /** The partial state of every query over references [start, end) (a shard). */
  estimatePartial(x: Float32Array, options: PartialOptions): PartialState {
    return partialOp.sync(this, x, options);
  }

  /** Async form of {@link estimatePartial}. */
  async estimatePartialAsync(x: Float32Array, options: PartialOptions): Promise<PartialState> {
    return partialOp.async(this, x, options);
  }

  /** @internal The validated plan of an estimatePartial call. */
  partialPlan(x: unknown, options: unknown) {
    const q = query(x, this.dim, options);
    const o = q.o as PartialOptions;
    const start = o.start === undefined ? 0 : is.integer(o.start, 'options.start', 0, this.size);
    const end = o.end === undefined ? this.size : is.integer(o.end, 'options.end', start, this.size);
    if (o.weighted !== undefined && typeof o.weighted !== 'boolean') throw is.typeError('a boolean', 'options.weighted', o.weighted);
    return { q, start, end, weighted: o.weighted !== false };
  }

  /** Merges partial states of disjoint shards (of this or other sets of the same dim) exactly. */
  static mergePartials(states: readonly PartialState[]): PartialState {
    if (!Array.isArray(states) || states.length === 0) throw is.typeError('a non-empty array of partial states', 'states', states);
    return callSync(() => native().mergePartials(states as PartialState[]));
  }

  /**
   * Finishes a (merged) partial state into estimate outputs. `x`, `sigma`, `alpha` and the
   * kernel must be those the states were computed with; N for logDensity is state.count.
   */
  static finalizePartial<O extends EstimateOutput = 'mean' | 'score'>(
    state: PartialState,
    x: Float32Array,
    options: EstimateOptions<O>,
  ): EstimateResult<O> {
    if (!is.isPlainObject(state) || typeof (state as PartialState).dim !== 'number') throw is.typeError('a partial state', 'state', state);
    const q = query(x, (state as PartialState).dim, options);
    const outputs = outputList(q.o.outputs, q.kernel);
    const bufs = outputBuffers(outputs, q.o.out, q.B, (state as PartialState).dim);
    callSync(() => native().finalizePartial({ state, x: q.x, alpha: q.alpha, sigma: q.sigma, kernel: q.kernel, out: bufs }));
    return resultOf<O>(outputs, bufs);
  }

  /**
   * Samples with the probability-flow ODE, the denoiser being this set's posterior mean, every
   * step in native code (no return to JavaScript between evaluations). Gives the same result as
   * sampleHeun / sampleEuler driven by `estimate` with the same options.
   */
  async sample(options: SampleOptions): Promise<SampleResult> {
    const { o, sigmas, solver, seed, seeds, offset, B, x, churn, kernel } = sampleRun(options, this.dim);
    const { sChurn, sTmin, sNoise } = churn;
    const sTmax = churn.sTmax === Infinity ? 1e300 : churn.sTmax;
    if (o.signal?.aborted) throw new ScorefieldAbortError('The sampler was aborted', { cause: o.signal.reason });
    const token = native().newAbortToken();
    const onAbort = () => native().abortToken(token);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    // Progress calls travel on their own queue: the promise waits until every queued one has
    // been delivered, so none arrives after the result.
    const user = o.onProgress;
    let delivered = 0;
    let expected = Infinity;
    let allDelivered: () => void = () => undefined;
    const progress = user === undefined ? null : (done: number, total: number) => {
      delivered++;
      try {
        user(done, total);
      } finally {
        if (delivered >= expected) allDelivered();
      }
    };
    try {
      const st = await callAsync(() =>
        native().sample({ ref: this.handle, x, batch: B, sigmas, heun: solver === 'heun', kernel, sChurn, sTmin, sTmax, sNoise, seed, seeds, offset, onProgress: progress, abortToken: token }),
      );
      if (progress && delivered < st.progressCalls) {
        await new Promise<void>((resolve) => {
          expected = st.progressCalls;
          allDelivered = resolve;
        });
      }
      // An abort that lands before the promise settles rejects it, even when the native loop
      // had already finished (for example one raised from onProgress on a busy main thread).
      if (o.signal?.aborted) throw new ScorefieldAbortError('The sampler was aborted', { cause: o.signal.reason });
      return { x, nfe: st.nfe, seconds: st.seconds, estimatorSeconds: st.estimatorSeconds };
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_SCOREFIELD_ABORTED' && o.signal?.aborted) {
        throw new ScorefieldAbortError('The sampler was aborted', { cause: o.signal.reason });
      }
      throw err;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Peak extra memory (bytes) one estimate call of `batch` queries allocates: O(threads x tile + B d). */
  workingMemory(batch: number, outputs: readonly EstimateOutput[] = ['mean', 'score']): number {
    is.integer(batch, 'batch', 0);
    return native().scratchBytes(this.handle, batch, needsWeighted(outputList(outputs)));
  }
}

export type { SampleOptions } from './sampling';

export interface SampleResult {
  /** The samples (batch x dim). */
  x: Float32Array;
  /** Denoiser (estimator) evaluations. */
  nfe: number;
  /** Seconds of the native loop, and of it inside the estimator. */
  seconds: number;
  estimatorSeconds: number;
}

export interface StableTargetOptions {
  sigma: PerSample;
  alpha?: PerSample;
  kernel?: Kernel | 'gaussian';
  out?: Float32Array;
}

/**
 * Stable target field training targets (Xu et al. 2023; docs/math.md section 2): for each pair
 * (x0_i, x_i) the score at x_i estimated over `ref` plus x0_i itself. A lower-variance
 * replacement for the conditional score -(x - alpha x0)/sigma^2, biased by O(1/N).
 */
export function stableTargets(x0Batch: Float32Array, xBatch: Float32Array, ref: ReferenceSet, options: StableTargetOptions): Float32Array {
  return stableOp.sync(x0Batch, xBatch, ref, options);
}

/** Async form of {@link stableTargets}. */
export async function stableTargetsAsync(x0Batch: Float32Array, xBatch: Float32Array, ref: ReferenceSet, options: StableTargetOptions): Promise<Float32Array> {
  return stableOp.async(x0Batch, xBatch, ref, options);
}

// Each estimator operation defined once (see operation() in native.ts); the methods above and
// the functions here are its sync and async forms.
const estimateOp = operation(
  (set: ReferenceSet, x: Float32Array, options: unknown) => ({ set, plan: set.plan(x, options) }),
  ({ set, plan }, async) => native().estimate({ ...set.queries(plan.q), out: plan.bufs, async }),
  ({ plan }, stats) => ({ plan, stats }),
);
const partialOp = operation(
  (set: ReferenceSet, x: Float32Array, options: PartialOptions) => ({ set, p: set.partialPlan(x, options) }),
  ({ set, p }, async) => native().estimatePartial({ ...set.queries(p.q), start: p.start, end: p.end, weighted: p.weighted, async }),
  (_, state) => state,
);
const stableOp = operation(
  (x0Batch: Float32Array, xBatch: Float32Array, ref: ReferenceSet, options: StableTargetOptions) => ({ ref, p: stablePlan(x0Batch, xBatch, ref, options) }),
  ({ ref, p }, async) => native().stableTargets({ ...ref.queries(p.q), x0: p.x0, out: p.out, async }),
  ({ p }) => p.out,
);

function stablePlan(x0: unknown, x: unknown, ref: unknown, options: unknown) {
  if (!(ref instanceof ReferenceSet)) throw is.typeError('a ReferenceSet', 'ref', ref);
  const q = query(x, ref.dim, options, 'xBatch');
  if (!isGaussian(q.kernel)) {
    throw new ScorefieldUnsupportedError('Expected the Gaussian kernel for options.kernel (stable targets are scores) but received another kernel');
  }
  const x0b = is.f32(x0, 'x0Batch', q.x.length);
  const o = q.o as StableTargetOptions;
  const out = o.out === undefined ? alloc.f32(q.x.length, 'the output') : is.f32(o.out, 'options.out', q.x.length);
  return { q, x0: x0b, out };
}
