/**
 * One error hierarchy for the whole package. Every error has a stable `code`; messages
 * read "Expected X for Y but received Z".
 */

/** Stable error codes. */
export type ErrorCode =
  | 'ERR_SCOREFIELD_TYPE'
  | 'ERR_SCOREFIELD_SHAPE'
  | 'ERR_SCOREFIELD_RANGE'
  | 'ERR_SCOREFIELD_OVERFLOW'
  | 'ERR_SCOREFIELD_DETACHED'
  | 'ERR_SCOREFIELD_ALIAS'
  | 'ERR_SCOREFIELD_UNSUPPORTED'
  | 'ERR_SCOREFIELD_MEMORY'
  | 'ERR_SCOREFIELD_NATIVE_LOAD'
  | 'ERR_SCOREFIELD_INTERNAL'
  | 'ERR_SCOREFIELD_DENOISER'
  | 'ERR_SCOREFIELD_ABORTED'
  | 'ERR_SCOREFIELD_FORMAT'
  | 'ERR_SCOREFIELD_FILE'
  | 'ERR_SCOREFIELD_LIMIT'
  | 'ERR_SCOREFIELD_REMOTE'
  | 'ERR_SCOREFIELD_SHARDS';

/** Base class of every error scorefield throws. */
export class ScorefieldError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A value of the wrong type: a plain array where a Float32Array was expected, a string for a number. */
export class ScorefieldTypeError extends ScorefieldError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SCOREFIELD_TYPE', message, options);
  }
}

/**
 * Buffers whose sizes do not fit together, that overlap where they must not
 * (`ERR_SCOREFIELD_ALIAS`) or that are detached (`ERR_SCOREFIELD_DETACHED`).
 */
export class ScorefieldShapeError extends ScorefieldError {
  constructor(
    message: string,
    code: 'ERR_SCOREFIELD_SHAPE' | 'ERR_SCOREFIELD_ALIAS' | 'ERR_SCOREFIELD_DETACHED' = 'ERR_SCOREFIELD_SHAPE',
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A number outside its domain (negative sigma, NaN, a size that overflows: `ERR_SCOREFIELD_OVERFLOW`). */
export class ScorefieldRangeError extends ScorefieldError {
  constructor(message: string, code: 'ERR_SCOREFIELD_RANGE' | 'ERR_SCOREFIELD_OVERFLOW' = 'ERR_SCOREFIELD_RANGE', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Something this CPU or build cannot do (an unavailable SIMD level). */
export class ScorefieldUnsupportedError extends ScorefieldError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SCOREFIELD_UNSUPPORTED', message, options);
  }
}

/**
 * The native side failed or refused: the addon did not load, memory ran out, a call needed more
 * working memory than setMemoryLimit allows (`ERR_SCOREFIELD_LIMIT`), or an internal error.
 */
export class ScorefieldNativeError extends ScorefieldError {
  constructor(
    message: string,
    code: 'ERR_SCOREFIELD_MEMORY' | 'ERR_SCOREFIELD_NATIVE_LOAD' | 'ERR_SCOREFIELD_INTERNAL' | 'ERR_SCOREFIELD_LIMIT' = 'ERR_SCOREFIELD_INTERNAL',
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The caller's denoiser threw, rejected or returned something unusable; `cause` holds what it threw. */
export class ScorefieldDenoiserError extends ScorefieldError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SCOREFIELD_DENOISER', message, options);
  }
}

/** Work stopped by an AbortSignal (name 'AbortError', like the platform's). */
export class ScorefieldAbortError extends ScorefieldError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ERR_SCOREFIELD_ABORTED', message, options);
    this.name = 'AbortError';
  }
}

/**
 * A file that cannot be used: unreadable or missing (`ERR_SCOREFIELD_FILE`), or not in the
 * expected format (`ERR_SCOREFIELD_FORMAT`: a malformed .npy header, a dtype other than float32
 * or float64, Fortran order, a shape that is not 2-d, truncated data).
 */
export class ScorefieldFileError extends ScorefieldError {
  constructor(message: string, code: 'ERR_SCOREFIELD_FORMAT' | 'ERR_SCOREFIELD_FILE' = 'ERR_SCOREFIELD_FORMAT', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * The distributed estimator (`scorefield/distributed`): Redis unreachable or lost, a job that
 * failed on a worker or did not finish in time, a malformed payload (`ERR_SCOREFIELD_REMOTE`,
 * with the cause); shards that do not tile the set exactly once, disagree on dim, or whose
 * content hash differs from the one expected (`ERR_SCOREFIELD_SHARDS`).
 */
export class ScorefieldRemoteError extends ScorefieldError {
  constructor(message: string, code: 'ERR_SCOREFIELD_REMOTE' | 'ERR_SCOREFIELD_SHARDS' = 'ERR_SCOREFIELD_REMOTE', options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Re-types an error thrown by the addon (a plain Error with a code) into the hierarchy. */
export function fromNative(err: unknown): unknown {
  if (err instanceof ScorefieldError || !(err instanceof Error)) return err;
  const code = (err as { code?: unknown }).code;
  const options = { cause: err };
  switch (code) {
    case 'ERR_SCOREFIELD_TYPE':
      return new ScorefieldTypeError(err.message, options);
    case 'ERR_SCOREFIELD_SHAPE':
    case 'ERR_SCOREFIELD_ALIAS':
    case 'ERR_SCOREFIELD_DETACHED':
      return new ScorefieldShapeError(err.message, code, options);
    case 'ERR_SCOREFIELD_RANGE':
    case 'ERR_SCOREFIELD_OVERFLOW':
      return new ScorefieldRangeError(err.message, code, options);
    case 'ERR_SCOREFIELD_UNSUPPORTED':
      return new ScorefieldUnsupportedError(err.message, options);
    case 'ERR_SCOREFIELD_MEMORY':
    case 'ERR_SCOREFIELD_INTERNAL':
    case 'ERR_SCOREFIELD_LIMIT':
      return new ScorefieldNativeError(err.message, code, options);
    case 'ERR_SCOREFIELD_ABORTED':
      return new ScorefieldAbortError(err.message, options);
    case 'ERR_SCOREFIELD_FORMAT':
      return new ScorefieldFileError(err.message, code, options);
    default:
      return err;
  }
}
