/** Process-wide settings of the native engine. */
import * as is from './is';
import { limitChanged } from './alloc';
import { addonPath, callSync, native } from './native';

export type SimdLevel = 'avx512' | 'avx2' | 'neon' | 'scalar';

export interface Capabilities {
  /** The kernel set in use now. */
  simd: SimdLevel;
  /** Levels this CPU can run, best first (always ends with 'scalar'). */
  simdAvailable: SimdLevel[];
  /** Worker threads of the shared pool. */
  threads: number;
  /** Threads the machine offers this process. */
  hardwareThreads: number;
  arch: 'x64' | 'arm64' | 'other';
  /** Elements per unit of parallel work; fixed, so results do not depend on thread count. */
  chunkElements: number;
  /** The working-memory cap per call in bytes (0: none); see setMemoryLimit. */
  memoryLimit: number;
  /**
   * Whether the fused pass can run its bf16 screen here (an x86-64 CPU with AVX512_BF16;
   * docs/numerics.md, "The bf16 screen"). It changes no result, only the time; see setScreening.
   */
  bf16Screen: boolean;
  /** The addon file in use (a prebuild, build/Release, or SCOREFIELD_NATIVE). */
  addon: string;
}

/** Which SIMD path runs and how many threads the shared pool has. */
export function capabilities(): Capabilities {
  return { ...(callSync(() => native().capabilities()) as Omit<Capabilities, 'addon'>), addon: addonPath() };
}

/**
 * Sets the number of worker threads of the one native pool every call shares (default: the
 * CPUs this process may use, or SCOREFIELD_THREADS). Results do not depend on it.
 */
export function setThreads(n: number): void {
  is.integer(n, 'threads', 1, 1024);
  callSync(() => native().setThreads(n));
}

/**
 * Forces a SIMD level for the whole process (tests and benchmarks; the default is the best
 * the CPU supports, capped by the SCOREFIELD_SIMD environment variable). Returns the level
 * now in use. Throws ERR_SCOREFIELD_UNSUPPORTED for a level this CPU cannot run.
 */
export function setSimdLevel(level: SimdLevel): SimdLevel {
  if (typeof level !== 'string') throw is.typeError('one of avx512, avx2, neon, scalar', 'level', level);
  return callSync(() => native().setSimdLevel(level)) as SimdLevel;
}

/**
 * Caps the working memory one call may allocate natively (a reference set's copy, the
 * estimator's scratch, the sampler's buffers), for servers that must not be pushed into
 * swapping or out-of-memory kills by a large request. A call that would need more is refused
 * before allocating anything with ScorefieldNativeError code ERR_SCOREFIELD_LIMIT. `null` or 0
 * removes the cap (the default, unless SCOREFIELD_MEMORY_LIMIT holds a byte count at load).
 * Concurrent calls are capped one by one, not in total.
 */
export function setMemoryLimit(bytes: number | null): void {
  const v = bytes === null ? 0 : is.integer(bytes, 'bytes', 0);
  callSync(() => native().setMemoryLimit(v));
  limitChanged(v);
}

/** What the native pool's floating-point flags said (see {@link floatingPointStatus}). */
export interface FloatingPointStatus {
  /** Whether pool work runs with flush-to-zero and denormals-are-zero (the default). */
  flushDenormals: boolean;
  /** A subnormal operand was read by pool work since the last reset (x86 only). */
  denormal: boolean;
  /** A result underflowed (was subnormal, or flushed to zero) since the last reset (x86 only). */
  underflow: boolean;
}

/**
 * Diagnostics: the denormal-operand and underflow flags that native pool work raised since
 * the last call with `reset: true` (x86 MXCSR; always false on other CPUs). scorefield's
 * kernels flush negligible weights to exactly 0 themselves, so on ordinary data both stay
 * false even with flushing turned off (see docs/numerics.md, "No subnormals").
 */
export function floatingPointStatus(options: { reset?: boolean } = {}): FloatingPointStatus {
  const o = is.options<{ reset?: boolean }>(options, 'options');
  return callSync(() => native().fpStatus(o.reset === true)) as FloatingPointStatus;
}

/**
 * Whether native pool work runs with flush-to-zero and denormals-are-zero set (default true;
 * the caller's thread gets its own setting back after every chunk). Turning it off is for
 * tests that check the kernels' own flushing; subnormal values in the caller's data are then
 * computed with, slowly on most Intel CPUs.
 */
export function setFlushDenormals(on: boolean): void {
  if (typeof on !== 'boolean') throw is.typeError('a boolean', 'on', on);
  callSync(() => native().setFlushDenormals(on));
}

/**
 * Turns exact pruning (docs/numerics.md, "Exact pruning") on or off for the whole process
 * (default on; for benchmarks and tests that compare against the full scan). Results with and
 * without pruning agree within the estimator's tolerance. Returns the previous setting.
 */
export function setPruning(on: boolean): boolean {
  if (typeof on !== 'boolean') throw is.typeError('a boolean', 'on', on);
  return callSync(() => native().setPruning(on));
}

/**
 * Turns the fused pass's bf16 screen (docs/numerics.md, "The bf16 screen") on or off for the
 * whole process (default on where `capabilities().bf16Screen`; for benchmarks and tests). The
 * screen never changes a result bit, only which float32 dot products are computed. Returns the
 * previous setting.
 */
export function setScreening(on: boolean): boolean {
  if (typeof on !== 'boolean') throw is.typeError('a boolean', 'on', on);
  return callSync(() => native().setScreening(on));
}
