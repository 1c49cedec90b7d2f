// A Gaussian mixture in d dimensions: its noised marginal and exact denoiser are closed-form,
// so ODE solutions and sample distributions can be checked exactly (float64).
import { rand } from './reference';

export interface Mixture {
  d: number;
  means: Float64Array; // K x d
  weights: Float64Array; // K
  tau: number; // component standard deviation
}

export function mixture2d(): Mixture {
  return { d: 2, means: Float64Array.of(-2, 0, 2, 0, 0, 2.5), weights: Float64Array.of(0.3, 0.3, 0.4), tau: 0.3 };
}

/** E[x0 | x] under x = x0 + sigma eps, x0 ~ mixture (float64 in, float32 out). */
export function exactDenoiser(m: Mixture): (x: Float32Array, sigma: number) => Float32Array {
  const K = m.weights.length;
  return (x, sigma) => {
    const d = m.d;
    const B = x.length / d;
    const out = new Float32Array(x.length);
    const v = m.tau ** 2 + sigma ** 2;
    const shrink = m.tau ** 2 / v;
    const logr = new Float64Array(K);
    for (let i = 0; i < B; i++) {
      let mx = -Infinity;
      for (let k = 0; k < K; k++) {
        let r2 = 0;
        for (let j = 0; j < d; j++) r2 += (x[i * d + j] - m.means[k * d + j]) ** 2;
        logr[k] = Math.log(m.weights[k]) - r2 / (2 * v);
        if (logr[k] > mx) mx = logr[k];
      }
      let s = 0;
      for (let k = 0; k < K; k++) s += Math.exp(logr[k] - mx);
      for (let j = 0; j < d; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const w = Math.exp(logr[k] - mx) / s;
          acc += w * (m.means[k * d + j] + shrink * (x[i * d + j] - m.means[k * d + j]));
        }
        out[i * d + j] = acc;
      }
    }
    return out;
  };
}

/** n samples of the mixture (seeded). */
export function sampleMixture(m: Mixture, n: number, seed: number): Float32Array {
  const u = rand(n * (m.d + 1), seed, 1e-12, 1);
  const v = rand(n * m.d, seed + 1, 0, 1);
  const out = new Float32Array(n * m.d);
  for (let i = 0; i < n; i++) {
    let c = 0;
    let acc = m.weights[0];
    while (u[i * (m.d + 1)] > acc && c < m.weights.length - 1) acc += m.weights[++c];
    for (let j = 0; j < m.d; j++) {
      const z = Math.sqrt(-2 * Math.log(u[i * (m.d + 1) + 1 + j])) * Math.cos(2 * Math.PI * v[i * m.d + j]);
      out[i * m.d + j] = m.means[c * m.d + j] + m.tau * z;
    }
  }
  return out;
}

/** Two-sample Kolmogorov-Smirnov statistic. */
export function ks2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const x = Float64Array.from(a).sort();
  const y = Float64Array.from(b).sort();
  let i = 0;
  let j = 0;
  let dmax = 0;
  while (i < x.length && j < y.length) {
    if (x[i] <= y[j]) i++;
    else j++;
    dmax = Math.max(dmax, Math.abs(i / x.length - j / y.length));
  }
  return dmax;
}
