/**
 * Loads the addon: a prebuild from prebuilds/ or the local build/Release (node-gyp-build),
 * or the file named by SCOREFIELD_NATIVE (used by CI to test the cmake-js build).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ScorefieldNativeError, ScorefieldRangeError, fromNative } from './errors';
import type { EstimateStats } from './estimator';

type MaybeAsync<T> = T | Promise<T>;
type C = number | Float32Array;
/** A kernel for the binding: its id, or [id, D]. */
export type KernelArg = number | [number, number];

/** Counters of one estimate call, as the binding returns them (see ReferenceSet.estimateWithStats). */
export type EstimateStatsRaw = Omit<EstimateStats, 'prunedShare'>;

/** The raw binding. Internal: arguments are validated by lib/ before they get here. */
export interface NativeBinding {
  capabilities(): {
    simd: string;
    simdAvailable: string[];
    threads: number;
    hardwareThreads: number;
    arch: string;
    chunkElements: number;
    memoryLimit: number;
    bf16Screen: boolean;
  };
  setThreads(n: number): void;
  setMemoryLimit(bytes: number): void;
  setSimdLevel(level: string): string;
  isDetached(v: ArrayBufferView | ArrayBuffer): boolean;
  fpStatus(reset: boolean): { flushDenormals: boolean; denormal: boolean; underflow: boolean };
  setFlushDenormals(on: boolean): void;
  setPruning(on: boolean): boolean;
  setScreening(on: boolean): boolean;
  perturb(out: Float32Array, x0: Float32Array, eps: Float32Array, B: number, d: number, alpha: C, sigma: C, async: boolean): MaybeAsync<undefined>;
  conditionalScore(out: Float32Array, x: Float32Array, x0: Float32Array, B: number, d: number, alpha: C, sigma: C, async: boolean): MaybeAsync<undefined>;
  velocityTarget(out: Float32Array, x0: Float32Array, eps: Float32Array, B: number, d: number, dAlpha: C, dSigma: C, async: boolean): MaybeAsync<undefined>;
  convert(from: number, to: number, out: Float32Array, model: Float32Array, x: Float32Array, B: number, d: number, alpha: C, sigma: C, async: boolean): MaybeAsync<undefined>;
  dsmLoss(pred: Float32Array, target: Float32Array, B: number, d: number, weight: C, grad: Float32Array | null, async: boolean): MaybeAsync<number>;
  randn(out: Float32Array, B: number, d: number, seed: bigint, stream: number, offset: number, async: boolean): MaybeAsync<undefined>;
  streamTriad(a: Float32Array, b: Float32Array, c: Float32Array, s: number, async: boolean): MaybeAsync<undefined>;
  probe(kind: 0 | 1, iters: number): number;
  step(request: StepRequest): MaybeAsync<undefined>;
  sample(request: SampleRequest): Promise<{ nfe: number; seconds: number; estimatorSeconds: number; progressCalls: number }>;
  newAbortToken(): AbortHandle;
  abortToken(token: AbortHandle): void;
  refBuild(data: Float32Array, n: number, d: number, async: boolean, panels?: boolean, screen?: boolean): MaybeAsync<RefHandle>;
  refInfo(ref: RefHandle): { size: number; dim: number; bytes: number; centre: Float32Array };
  refRows(ref: RefHandle, indices: Uint32Array, out: Float32Array): undefined;
  estimate(request: QueryRequest & { out: Outputs; async: boolean }): MaybeAsync<EstimateStatsRaw>;
  estimatePartial(request: QueryRequest & { start: number; end: number; weighted: boolean; async: boolean }): MaybeAsync<NativeState>;
  mergePartials(states: NativeState[]): NativeState;
  finalizePartial(request: { state: NativeState; x: Float32Array; alpha: C; sigma: C; kernel: KernelArg; out: Outputs }): undefined;
  scratchBytes(ref: RefHandle, B: number, weighted: boolean): number;
  parseNpyHeader(bytes: Uint8Array): NpyHeader;
  stableTargets(request: QueryRequest & { x0: Float32Array; out: Float32Array; async: boolean }): MaybeAsync<undefined>;
}

// The requests of the larger calls: plain objects of validated values, read once by lib/ and
// by name by the binding (sharp's baton).

/** A batch of queries against a reference set. */
export interface QueryRequest {
  ref: RefHandle;
  x: Float32Array;
  batch: number;
  alpha: C;
  sigma: C;
  kernel: KernelArg;
}

/** Output buffers of the estimator; absent fields are not computed. */
export type Outputs = Partial<Record<'mean' | 'score' | 'logDensity' | 'ess' | 'traceCov' | 'divergence', Float32Array>>;

/** One step kernel (native/binding/steps_binding.cpp). */
export interface StepRequest {
  /** 0 euler, 1 heun correction, 2 euler-maruyama, 3 langevin, 4 churn, 5 noise only. */
  kind: number;
  out: Float32Array;
  x: Float32Array;
  denoised: Float32Array | null;
  xNext: Float32Array | null;
  denoisedNext: Float32Array | null;
  batch: number;
  dim: number;
  /** sigma */
  a: C;
  /** sigmaNext, the step size (Langevin) or sigmaHat (churn) */
  b: C;
  sNoise: number;
  seed: bigint;
  seeds: BigUint64Array | null;
  stream: number;
  offset: number;
  async: boolean;
}

/** The native sampler. */
export interface SampleRequest {
  ref: RefHandle;
  x: Float32Array;
  batch: number;
  sigmas: Float64Array;
  heun: boolean;
  kernel: KernelArg;
  sChurn: number;
  sTmin: number;
  sTmax: number;
  sNoise: number;
  seed: bigint;
  seeds: BigUint64Array | null;
  offset: number;
  onProgress: ((step: number, total: number) => void) | null;
  abortToken: AbortHandle;
}

/** A parsed .npy header (native/core/npy.hpp). */
export interface NpyHeader {
  version: string;
  descr: string;
  byteOrder: string;
  kind: string;
  itemSize: number;
  fortranOrder: boolean;
  shape: number[];
  dataOffset: number;
  elements: number;
  dataBytes: number;
}
/** An opaque native abort flag. */
export type AbortHandle = { readonly __brand: 'scorefield.AbortToken' };
/** An opaque native reference set. */
export type RefHandle = { readonly __brand: 'scorefield.ReferenceSet' };
/** The serialisable partial state of the estimator (see ReferenceSet.estimatePartial). */
export interface NativeState {
  batch: number;
  dim: number;
  count: number;
  origin: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  sumSq: Float64Array;
  sumYY: Float64Array;
  weighted: Float64Array | null;
}

function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'scorefield') return dir;
      } catch {
        // keep looking upwards
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return path.join(__dirname, '..');
    dir = up;
  }
}

let cached: NativeBinding | undefined;
let loadedFrom = '';

/** The file the addon was loaded from. */
export function addonPath(): string {
  native();
  return loadedFrom;
}

/** The loaded binding (loaded on first use). */
export function native(): NativeBinding {
  if (cached) return cached;
  // The addon reads SCOREFIELD_MEMORY_LIMIT when it loads (native/core/limits.cpp, the same
  // grammar); a value it cannot read must not silently mean "no cap".
  const limit = process.env.SCOREFIELD_MEMORY_LIMIT;
  if (limit !== undefined && limit !== '' && !/^[0-9]+([kKmMgGtT][iI]?[bB]|[bB])?$/.test(limit)) {
    throw new ScorefieldRangeError(
      `Expected a byte count such as 1073741824, 1GiB or 512MB for SCOREFIELD_MEMORY_LIMIT but received ${JSON.stringify(limit)}`,
    );
  }
  const explicit = process.env.SCOREFIELD_NATIVE;
  try {
    loadedFrom = explicit ? path.resolve(explicit) : (require('node-gyp-build').path(packageRoot()) as string);
    cached = require(loadedFrom) as NativeBinding;
  } catch (err) {
    throw new ScorefieldNativeError(
      `Expected a loadable scorefield addon for ${explicit ? `SCOREFIELD_NATIVE=${explicit}` : 'this platform'} but received a load failure: ${(err as Error).message}. Run \`npm rebuild scorefield\` to build it.`,
      'ERR_SCOREFIELD_NATIVE_LOAD',
      { cause: err },
    );
  }
  return cached;
}

/**
 * An operation defined once: how its arguments become a validated plan, the binding call
 * for a plan (sync or async), and the result; its sync and async forms are derived, so the
 * two never differ but for where the work runs.
 */
export function operation<A extends unknown[], P, N, R>(
  planOf: (...args: A) => P,
  call: (plan: P, async: boolean) => MaybeAsync<N>,
  result: (plan: P, value: N) => R,
): { sync: (...args: A) => R; async: (...args: A) => Promise<R> } {
  return {
    sync: (...args: A): R => {
      const p = planOf(...args);
      return result(p, callSync(() => call(p, false)));
    },
    async: async (...args: A): Promise<R> => {
      const p = planOf(...args);
      return result(p, await callAsync(() => call(p, true)));
    },
  };
}

/** Runs a synchronous binding call, re-typing its errors. */
export function callSync<T>(fn: () => MaybeAsync<T>): T {
  try {
    return fn() as T;
  } catch (err) {
    throw fromNative(err);
  }
}

/** Awaits an asynchronous binding call, re-typing its errors. */
export async function callAsync<T>(fn: () => MaybeAsync<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err);
  }
}
