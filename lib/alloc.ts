/**
 * The package's own large JavaScript allocations (result arrays, the sampler's batch): checked
 * against the memory limit before allocating (ERR_SCOREFIELD_LIMIT), and a failed allocation
 * is ERR_SCOREFIELD_MEMORY instead of V8's uncoded RangeError.
 */
import { ScorefieldNativeError } from './errors';
import { callSync, native } from './native';

let cap: number | undefined;

/** The memory limit in bytes (0: none), as the addon holds it. */
export function memoryLimit(): number {
  if (cap === undefined) cap = (callSync(() => native().capabilities()) as { memoryLimit: number }).memoryLimit;
  return cap;
}

/** Called by setMemoryLimit after the addon took the new value. */
export function limitChanged(bytes: number): void {
  cap = bytes;
}

function guard(bytes: number, what: string): void {
  const c = memoryLimit();
  if (c !== 0 && bytes > c) {
    throw new ScorefieldNativeError(
      `Expected at most ${c} bytes (the memory limit) for ${what} but it needs ${bytes}`,
      'ERR_SCOREFIELD_LIMIT',
    );
  }
}

function failed(bytes: number, what: string, cause: unknown): never {
  if (cause instanceof RangeError) {
    throw new ScorefieldNativeError(`Expected enough memory for ${what} (${bytes} bytes) but allocation failed`, 'ERR_SCOREFIELD_MEMORY', { cause });
  }
  throw cause;
}

function zeroed<T>(make: new (n: number) => T, bytesPer: number, n: number, what: string): T {
  guard(n * bytesPer, what);
  try {
    return new make(n);
  } catch (e) {
    return failed(n * bytesPer, what, e);
  }
}

/** A zeroed Float32Array of n elements for `what`. */
export const f32 = (n: number, what: string): Float32Array => zeroed(Float32Array, 4, n, what);

/** A zeroed Float64Array of n elements for `what`. */
export const f64 = (n: number, what: string): Float64Array => zeroed(Float64Array, 8, n, what);
