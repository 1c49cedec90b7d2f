/**
 * The nearest-neighbour analysis of the command: how far each sample lies from the closest
 * training point (a sampler of the empirical score memorises, so this goes to 0 as the last
 * noise level does).
 */
import { ScorefieldAbortError } from '../errors';

/** Distance of each row of x to its nearest row of data (direct differences, double sums). */
export function nearestDistances(x: Float32Array, data: Float32Array, dim: number): Float64Array {
  const B = x.length / dim, N = data.length / dim;
  const out = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    let best = Infinity;
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < dim && s < best; k++) {
        const t = x[i * dim + k] - data[j * dim + k];
        s += t * t;
      }
      if (s < best) best = s;
    }
    out[i] = Math.sqrt(best);
  }
  return out;
}

/**
 * The same, in chunks of rows that yield to the event loop in between, so Ctrl-C (an aborted
 * `signal`) stops it promptly even for a large batch against a large dataset.
 */
export async function nearestDistancesAsync(x: Float32Array, data: Float32Array, dim: number, signal?: AbortSignal): Promise<Float64Array> {
  const B = x.length / dim, N = data.length / dim;
  const out = new Float64Array(B);
  const rowsPerChunk = Math.max(1, Math.floor(2e7 / Math.max(1, N * dim)));  // about 10-50 ms of work
  for (let i0 = 0; i0 < B; i0 += rowsPerChunk) {
    if (signal?.aborted) throw new ScorefieldAbortError('The nearest-neighbour analysis was aborted', { cause: signal.reason });
    const i1 = Math.min(B, i0 + rowsPerChunk);
    out.set(nearestDistances(x.subarray(i0 * dim, i1 * dim), data, dim), i0);
    await new Promise((r) => setImmediate(r));
  }
  if (signal?.aborted) throw new ScorefieldAbortError('The nearest-neighbour analysis was aborted', { cause: signal.reason });
  return out;
}
