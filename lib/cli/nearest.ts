/**
 * The nearest-neighbour analysis of the command: how far each sample lies from the closest
 * training point (a sampler of the empirical score memorises, so this goes to 0 as the last
 * noise level does).
 */

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
