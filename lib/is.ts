/**
 * Input validation shared by every entry point (in the spirit of sharp's lib/is.js):
 * small predicates plus assertions that throw the package's coded errors with messages
 * of the form "Expected X for Y but received Z".
 */
import { ScorefieldRangeError, ScorefieldShapeError, ScorefieldTypeError } from './errors';
import { native } from './native';

/** A value described for an error message: "a Float64Array of length 3", "the string 'x'", "NaN". */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return `the string '${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  if (typeof v === 'bigint') return `the bigint ${v}n`;
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return 'a function';
  if (ArrayBuffer.isView(v)) {
    const name = v.constructor?.name ?? 'typed array';
    const len = (v as { length?: number }).length;
    return len === undefined ? `a ${name}` : `a ${name} of length ${len}`;
  }
  if (Array.isArray(v)) return `an Array of length ${v.length}`;
  return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
}

export const isNumber = (v: unknown): v is number => typeof v === 'number';
export const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
export const isFloat32Array = (v: unknown): v is Float32Array => v instanceof Float32Array;
export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);

export function typeError(what: string, name: string, v: unknown): ScorefieldTypeError {
  return new ScorefieldTypeError(`Expected ${what} for ${name} but received ${describe(v)}`);
}

export function rangeError(what: string, name: string, v: unknown): ScorefieldRangeError {
  return new ScorefieldRangeError(`Expected ${what} for ${name} but received ${describe(v)}`);
}

/** Asserts a Float32Array, optionally of an exact length; reports detached buffers as such. */
export function f32(v: unknown, name: string, length?: number): Float32Array {
  if (!(v instanceof Float32Array)) throw typeError('a Float32Array', name, v);
  // A detached buffer reads as length 0; only then is the (native) check worth its cost.
  if (v.length === 0 && native().isDetached(v)) {
    throw new ScorefieldShapeError(
      `Expected an attached buffer for ${name} but received a Float32Array whose ArrayBuffer is detached`,
      'ERR_SCOREFIELD_DETACHED',
    );
  }
  if (length !== undefined && v.length !== length) {
    throw new ScorefieldShapeError(`Expected a Float32Array of length ${length} for ${name} but received ${describe(v)}`);
  }
  return v;
}

/** Asserts an integer in [min, max] (both inclusive). */
export function integer(v: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw typeError('an integer', name, v);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw rangeError(`an integer from ${min} to ${max}`, name, v);
  }
  return v;
}

export type Domain = 'finite' | 'nonnegative' | 'positive';

const domainText: Record<Domain, string> = {
  finite: 'a finite number',
  nonnegative: 'a finite number >= 0',
  positive: 'a finite number > 0',
};

function inDomain(x: number, domain: Domain): boolean {
  if (!Number.isFinite(x)) return false;
  if (domain === 'positive') return x > 0;
  if (domain === 'nonnegative') return x >= 0;
  return true;
}

/** Asserts a number in a domain. */
export function scalar(v: unknown, name: string, domain: Domain): number {
  if (typeof v !== 'number') throw typeError(domainText[domain], name, v);
  if (!inDomain(v, domain)) throw rangeError(domainText[domain], name, v);
  return v;
}

/**
 * A per-sample coefficient: one number for the batch, or one value per sample as a
 * Float32Array (used as is, zero-copy), a Float64Array or a plain array of numbers (copied into
 * a new Float32Array: the core reads per-sample coefficients in float32). Every element is
 * checked against the domain (O(B)), after the conversion too (a positive double below the
 * float32 range would become 0).
 */
export type Coefficient = number | Float32Array;

export function coefficient(v: unknown, name: string, domain: Domain): Coefficient {
  if (typeof v === 'number') return scalar(v, name, domain);
  let out: Float32Array;
  if (v instanceof Float32Array) {
    out = f32(v, name);  // a detached buffer: ERR_SCOREFIELD_DETACHED
  } else if (v instanceof Float64Array || Array.isArray(v)) {
    if (v instanceof Float64Array && v.length === 0 && native().isDetached(v)) {
      throw new ScorefieldShapeError(`Expected an attached buffer for ${name} but received a Float64Array whose ArrayBuffer is detached`, 'ERR_SCOREFIELD_DETACHED');
    }
    const src = v as ArrayLike<unknown>;
    for (let i = 0; i < src.length; i++) {
      if (typeof src[i] !== 'number') throw typeError('numbers', `${name}[${i}]`, src[i]);
      if (!inDomain(src[i] as number, domain)) {
        throw new ScorefieldRangeError(`Expected ${domainText[domain]} for ${name}[${i}] but received ${describe(src[i])}`);
      }
    }
    out = Float32Array.from(src as ArrayLike<number>);
  } else {
    throw typeError(`a number, or per-sample values as a Float32Array, Float64Array or array of numbers`, name, v);
  }
  for (let i = 0; i < out.length; i++) {
    if (!inDomain(out[i], domain)) {
      const was = out === v ? '' : ` (${describe((v as ArrayLike<number>)[i])} in float32)`;
      throw new ScorefieldRangeError(`Expected ${domainText[domain]} for ${name}[${i}] but received ${describe(out[i])}${was}`);
    }
  }
  return out;
}

/**
 * Works out the batch shape (B, d) of n elements from per-sample coefficient arrays (which
 * must agree on B) and an optional explicit dim. With neither, the data is one row.
 */
export function batchShape(
  n: number,
  perSample: ReadonlyArray<readonly [string, unknown]>,
  dim?: { name: string; value: unknown },
): { B: number; d: number } {
  let B: number | undefined;
  let from = '';
  for (const [name, v] of perSample) {
    if (v instanceof Float32Array) {
      if (B === undefined) {
        B = v.length;
        from = name;
      } else if (v.length !== B) {
        throw new ScorefieldShapeError(
          `Expected a Float32Array of length ${B} (the batch size given by ${from}) for ${name} but received ${describe(v)}`,
        );
      }
    }
  }
  if (dim && dim.value !== undefined) {
    const d = integer(dim.value, dim.name, 1);
    if (n % d !== 0) {
      throw new ScorefieldShapeError(`Expected a data length divisible by ${dim.name}=${d} for ${dim.name} but received length ${n}`);
    }
    if (B !== undefined && B * d !== n) {
      throw new ScorefieldShapeError(
        `Expected ${dim.name} = ${n / B} (data length ${n} / batch ${B} from ${from}) for ${dim.name} but received ${d}`,
      );
    }
    return { B: n / d, d };
  }
  if (B === undefined) return { B: 1, d: n };
  if (B === 0) {
    if (n !== 0) throw new ScorefieldShapeError(`Expected a non-empty Float32Array for ${from} but received ${describe([])} with ${n} data elements`);
    return { B: 0, d: 0 };
  }
  if (n % B !== 0) {
    throw new ScorefieldShapeError(
      `Expected a data length divisible by the batch size ${B} (from ${from}) for the data arrays but received length ${n}`,
    );
  }
  return { B, d: n / B };
}

/** Options must be undefined or a plain object. */
export function options<T extends object>(v: unknown, name: string): Partial<T> {
  if (v === undefined) return {};
  if (!isPlainObject(v)) throw typeError('an options object', name, v);
  // A snapshot: every property (getters included) is read exactly once, here, before anything
  // is validated, so a getter cannot change a value after it was checked.
  return { ...(v as object) } as Partial<T>;
}
