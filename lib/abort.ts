/** Waiting on the caller's code (a denoiser, a model) without outliving an AbortSignal. */
import { ScorefieldAbortError } from './errors';

/**
 * Resolves with `value` (awaited), or rejects with a ScorefieldAbortError as soon as `signal`
 * aborts, even if `value` never settles: a model that hangs cannot keep an aborted job alive.
 * Rejections of `value` pass through unchanged.
 */
export function raceAbort<T>(value: T | PromiseLike<T>, signal: AbortSignal | undefined, message: string): Promise<T> {
  if (!signal || !value || typeof (value as PromiseLike<T>).then !== 'function') return Promise.resolve(value);
  if (signal.aborted) return Promise.reject(new ScorefieldAbortError(message, { cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new ScorefieldAbortError(message, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(value).then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
