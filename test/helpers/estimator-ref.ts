// Float64 direct-difference reference of the self-normalized estimator (docs/math.md section 2),
// written independently of the library: l_j = -||x - alpha y_j||^2 / (2 sigma^2).
import { randn, type Kernel } from '../../lib/index';
import { rand } from './reference';

export interface RefResult {
  mean: Float64Array;
  score: Float64Array;
  logDensity: number;
  ess: number;
  traceCov: number;
  divergence: number;
}

export function referenceEstimate(Y: Float32Array, d: number, x: ArrayLike<number>, alpha: number, sigma: number): RefResult {
  const N = Y.length / d;
  const l = new Float64Array(N);
  let mx = -Infinity;
  for (let j = 0; j < N; j++) {
    let r2 = 0;
    for (let k = 0; k < d; k++) {
      const t = x[k] - alpha * Y[j * d + k];
      r2 += t * t;
    }
    l[j] = -r2 / (2 * sigma * sigma);
    if (l[j] > mx) mx = l[j];
  }
  const { mean, ess, traceCov: tr, s } = posteriorMoments(Y, d, l, mx);
  const score = new Float64Array(d);
  for (let k = 0; k < d; k++) score[k] = (alpha * mean[k] - x[k]) / (sigma * sigma);
  const logDensity = mx + Math.log(s) - (d / 2) * Math.log(2 * Math.PI * sigma * sigma) - Math.log(N);
  return { mean, score, logDensity, ess, traceCov: tr, divergence: ((alpha * alpha * tr) / (sigma * sigma) - d) / (sigma * sigma) };
}

/** ||a - b|| / ||b|| over one row. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, offset = 0): number {
  let e = 0;
  let n = 0;
  for (let k = 0; k < b.length; k++) {
    e += (a[offset + k] - b[k]) ** 2;
    n += b[k] ** 2;
  }
  return Math.sqrt(e) / Math.max(Math.sqrt(n), 1e-30);
}

/**
 * MNIST-like images: 28 x 28 in [-1, 1], background exactly -1, a few soft strokes.
 */
export function mnistLike(n: number, seed: number): Float32Array {
  const d = 784;
  const out = new Float32Array(n * d).fill(-1);
  const r = rand(n * 16, seed, 0, 1);
  for (let i = 0; i < n; i++) {
    for (let s = 0; s < 3; s++) {
      const o = i * 16 + s * 5;
      const x0 = 6 + 16 * r[o];
      const y0 = 6 + 16 * r[o + 1];
      const x1 = 6 + 16 * r[o + 2];
      const y1 = 6 + 16 * r[o + 3];
      const w = 1 + 1.5 * r[o + 4];
      for (let py = 0; py < 28; py++) {
        for (let px = 0; px < 28; px++) {
          // distance to the segment
          const vx = x1 - x0;
          const vy = y1 - y0;
          const t = Math.max(0, Math.min(1, ((px - x0) * vx + (py - y0) * vy) / (vx * vx + vy * vy + 1e-9)));
          const dx = px - (x0 + t * vx);
          const dy = py - (y0 + t * vy);
          const v = Math.exp(-(dx * dx + dy * dy) / (2 * w * w));
          const idx = i * d + py * 28 + px;
          out[idx] = Math.min(1, Math.max(out[idx], 2 * v - 1));
        }
      }
    }
    // quantise like 8-bit images
    for (let k = 0; k < d; k++) out[i * d + k] = Math.fround(Math.round((out[i * d + k] + 1) * 127.5) / 127.5 - 1);
  }
  return out;
}

/** A 2-d toy set: two noisy rings plus a blob, shifted by `shift`. */
export function toy2d(n: number, seed: number, shift = 0): Float32Array {
  const r = rand(3 * n, seed, 0, 1);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const a = 2 * Math.PI * r[3 * i];
    const kind = r[3 * i + 2];
    const rad = kind < 0.4 ? 1 : kind < 0.8 ? 0.5 : 0.1 * r[3 * i + 1];
    const jitter = 0.05 * (r[3 * i + 1] - 0.5);
    out[2 * i] = shift + (rad + jitter) * Math.cos(a);
    out[2 * i + 1] = shift + (rad + jitter) * Math.sin(a);
  }
  return out;
}

/** Queries x = alpha y_j + sigma eps around random reference points. */
export function noisyQueries(Y: Float32Array, d: number, B: number, alpha: number, sigma: number, seed: number): Float32Array {
  const N = Y.length / d;
  const pickU = rand(B, seed, 0, 1);
  const u1 = rand(B * d, seed + 1, 1e-12, 1);
  const u2 = rand(B * d, seed + 2, 0, 1);
  const x = new Float32Array(B * d);
  for (let i = 0; i < B; i++) {
    const j = Math.min(N - 1, Math.floor(pickU[i] * N));
    for (let k = 0; k < d; k++) {
      const z = Math.sqrt(-2 * Math.log(u1[i * d + k])) * Math.cos(2 * Math.PI * u2[i * d + k]);
      x[i * d + k] = alpha * Y[j * d + k] + sigma * z;
    }
  }
  return x;
}

/**
 * The posterior mean, effective sample size and trace of the covariance from float64
 * log-weights l (mx their maximum), by direct differences (no cancellation); s = sum exp(l - mx).
 */
export function posteriorMoments(Y: Float32Array, d: number, l: Float64Array, mx: number): { mean: Float64Array; ess: number; traceCov: number; s: number } {
  const N = Y.length / d;
  let s = 0;
  let s2 = 0;
  const mean = new Float64Array(d);
  for (let j = 0; j < N; j++) {
    const w = Math.exp(l[j] - mx);
    s += w;
    s2 += w * w;
    for (let k = 0; k < d; k++) mean[k] += w * Y[j * d + k];
  }
  for (let k = 0; k < d; k++) mean[k] /= s;
  let tr = 0;
  for (let j = 0; j < N; j++) {
    const w = Math.exp(l[j] - mx) / s;
    if (w === 0) continue;
    let dd = 0;
    for (let k = 0; k < d; k++) dd += (Y[j * d + k] - mean[k]) ** 2;
    tr += w * dd;
  }
  return { mean, ess: (s * s) / s2, traceCov: tr, s };
}

/** base + jitter * z1 + sigma * z2 with seeded standard normal z1, z2 (queries near data points). */
export function noised(base: Float32Array, sigma: number, seed: number, jitter = 0): Float32Array {
  const eps = randn(base.length, { seed });
  const jit = jitter > 0 ? randn(base.length, { seed: seed + 7 }) : undefined;
  const x = new Float32Array(base.length);
  for (let i = 0; i < x.length; i++) x[i] = base[i] + (jit ? jitter * jit[i] : 0) + sigma * eps[i];
  return x;
}

/**
 * Float64 log-weight of each kernel (docs/math.md), up to a constant: Gaussian, Poisson
 * -((d + D)/2) log(r^2 + tau^2), radial log F'(r/tau) - (d - 1) log r with r clamped at 1e-7 tau
 * (log sech^2 u in its overflow-free form).
 */
export function refLogWeight(kernel: Kernel, r2: number, tau: number, d: number): number {
  switch (kernel.kind) {
    case 'gaussian':
      return -r2 / (2 * tau * tau);
    case 'poisson':
      return -((d + kernel.D) / 2) * Math.log(r2 + tau * tau);
    default: {
      const r = Math.max(Math.sqrt(r2), 1e-7 * tau);
      const u = r / tau;
      const lf = kernel.family === 'tanh' ? -2 * (u + Math.log1p(Math.exp(-2 * u)) - Math.log(2)) : -u;
      return lf - (d - 1) * Math.log(r);
    }
  }
}

/** Every row's float64 log-weight for query x (refLogWeight), and their maximum. */
export function refLogWeights(Y: Float32Array, d: number, x: ArrayLike<number>, kernel: Kernel, tau: number): { l: Float64Array; mx: number } {
  const N = Y.length / d;
  const l = new Float64Array(N);
  let mx = -Infinity;
  for (let j = 0; j < N; j++) {
    let r2 = 0;
    for (let k = 0; k < d; k++) r2 += (x[k] - Y[j * d + k]) ** 2;
    l[j] = refLogWeight(kernel, r2, tau, d);
    mx = Math.max(mx, l[j]);
  }
  return { l, mx };
}
