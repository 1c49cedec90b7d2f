/**
 * Kernels of the self-normalized estimator: a kernel is its log-weight as a function of the
 * squared distance r^2 = ||x - alpha y||^2, with its normalising constant (docs/math.md sections 2
 * and 4). The option called `sigma` is the kernel's scale for every kernel: sigma for the
 * Gaussian, r for Poisson, t for the radial families.
 */
import { ScorefieldShapeError } from './errors';
import * as is from './is';
import type { KernelArg } from './native';
import { conditionalScore, perturb, randn, type PerSample } from './targets';
import * as alloc from './alloc';

/** Seeded draws: sample i of a batch depends only on (seed, i). */
export interface DrawOptions {
  seed?: number | bigint;
  /** Per-sample dimension (default: the whole array is one sample). */
  dim?: number;
  /** Index of the first sample (default 0): sample i uses the noise of index offset + i, so a
   * long run cut into batches draws the same values as one call. */
  offset?: number;
}

/** The members every kernel has besides its identity. */
export interface KernelMethods {
  /**
   * The training target of the field: (x - x0) / tau (for the Gaussian this is eps/sigma; the
   * ODE of every family is dx/dtau = (x - m) / tau).
   */
  conditionalField(x: Float32Array, x0: Float32Array, tau: PerSample, out?: Float32Array): Float32Array;
  /** Draws x ~ p(. | x0) at scale tau (number or per-sample), with seeded noise. */
  perturb(x0: Float32Array, tau: PerSample, options?: DrawOptions): Float32Array;
  /** Draws `batch` points of dimension `dim` from the prior at scale tauMax (x0 = 0). */
  samplePrior(batch: number, dim: number, tauMax: number, options?: { seed?: number | bigint }): Float32Array;
}

/** The Gaussian kernel: log p(x | y) = -r^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2). */
export interface GaussianKernel extends KernelMethods {
  readonly kind: 'gaussian';
}

/**
 * The Poisson-flow kernel with D augmented dimensions (D = 1: the seed's gravity model; PFGM++
 * for other D): p_r(x | y) = C_{d,D} r^D / (||x - y||^2 + r^2)^((d+D)/2).
 */
export interface PoissonKernel extends KernelMethods {
  readonly kind: 'poisson';
  readonly D: number;
}

/**
 * A kernel built from a radial CDF psi_t(r) = F(r/t) (the seed's inverse construction):
 * F = tanh or 1 - exp(-u); p(x | y) = F'(r/t) / (t |S^(d-1)| r^(d-1)), r clamped below at
 * 1e-7 t (the weights are singular at r = 0 when d > 1).
 */
export interface RadialKernel extends KernelMethods {
  readonly kind: 'radial';
  readonly family: 'tanh' | 'exp';
}

export type Kernel = GaussianKernel | PoissonKernel | RadialKernel;

/** Upper tail of the standard normal, Q(z) = P(Z > z), relative error < 2e-7 (erfc fit). */
function normalQ(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * x);
  const r =
    t *
    Math.exp(
      -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return z >= 0 ? r / 2 : 1 - r / 2;
}

interface Shape {
  x0: Float32Array;
  B: number;
  d: number;
  tau: (i: number) => number;
  seed: number | bigint;
  offset: number;
}

function shape(x0: unknown, tau: unknown, options: unknown): Shape {
  const x = is.f32(x0, 'x0');
  const o = is.options<DrawOptions>(options, 'options');
  const t = is.coefficient(tau, 'tau', 'positive');
  const { B, d } = is.batchShape(x.length, [['tau', t]], o.dim === undefined ? undefined : { name: 'options.dim', value: o.dim });
  if (x.length === 0) throw new ScorefieldShapeError(`Expected a non-empty Float32Array for x0 but received ${is.describe(x)}`);
  const offset = o.offset === undefined ? 0 : is.integer(o.offset, 'options.offset');
  return { x0: x, B, d, tau: (i) => (typeof t === 'number' ? t : t[i]), seed: o.seed ?? 0, offset };
}

/** x0 + radius_i * direction_i, the directions uniform on the sphere (stream 0 of the seed). */
function radialDraw(sh: Shape, radius: (i: number) => number): Float32Array {
  const z = randn(sh.B * sh.d, { seed: sh.seed, stream: 0, dim: sh.d, offset: sh.offset });
  const out = alloc.f32(sh.B * sh.d, 'the output');
  for (let i = 0; i < sh.B; i++) {
    let n2 = 0;
    for (let k = 0; k < sh.d; k++) n2 += z[i * sh.d + k] ** 2;
    const f = radius(i) / Math.sqrt(n2);
    for (let k = 0; k < sh.d; k++) out[i * sh.d + k] = sh.x0[i * sh.d + k] + f * z[i * sh.d + k];
  }
  return out;
}

/** One uniform in (0, 1) per sample from stream 1 of the seed. */
function uniforms(sh: Shape): Float64Array {
  const z = randn(sh.B, { seed: sh.seed, stream: 1, dim: 1, offset: sh.offset });
  return Float64Array.from(z, (v) => Math.min(Math.max(normalQ(-v), 1e-300), 1 - 2 ** -53));
}

const methods = (kind: 'gaussian' | 'poisson' | 'radial', D: number, family: 'tanh' | 'exp'): KernelMethods => ({
  conditionalField(x, x0, tau, out) {
    // (x - x0) / tau = conditionalScore(x0, x, 1, sqrt(tau)): one rounding for the difference
    const t = is.coefficient(tau, 'tau', 'positive');
    const root = typeof t === 'number' ? Math.sqrt(t) : t.map(Math.sqrt);
    return conditionalScore(x0, x, 1, root, out);
  },
  perturb(x0, tau, options) {
    const sh = shape(x0, tau, options);
    if (kind === 'gaussian') {
      const z = randn(sh.B * sh.d, { seed: sh.seed, stream: 0, dim: sh.d, offset: sh.offset });
      const t = is.coefficient(tau, 'tau', 'positive');
      return perturb(sh.x0, z, 1, t);
    }
    if (kind === 'poisson') {
      // x0 + r eps_x / ||eps_D||: ||eps_x|| / ||eps_D|| is the radial law (docs/math.md section 4).
      const norms = chiNorms(sh, D);
      const z = randn(sh.B * sh.d, { seed: sh.seed, stream: 0, dim: sh.d, offset: sh.offset });
      const out = alloc.f32(sh.B * sh.d, 'the output');
      for (let i = 0; i < sh.B; i++) {
        const f = sh.tau(i) / norms[i];
        for (let k = 0; k < sh.d; k++) out[i * sh.d + k] = sh.x0[i * sh.d + k] + f * z[i * sh.d + k];
      }
      return out;
    }
    // radial: r = t F^-1(U), direction uniform
    const u = uniforms(sh);
    return radialDraw(sh, (i) => sh.tau(i) * (family === 'tanh' ? Math.atanh(u[i]) : -Math.log1p(-u[i])));
  },
  samplePrior(batch, dim, tauMax, options) {
    is.integer(batch, 'batch', 1, 2 ** 31);
    is.integer(dim, 'dim', 1);
    is.scalar(tauMax, 'tauMax', 'positive');
    return this.perturb(alloc.f32(batch * dim, 'the samples (batch x dim)'), tauMax, { seed: options?.seed, dim });
  },
});

/** ||eps_D|| per sample: exact (D normals, stream 2) up to D = 4096, else Wilson-Hilferty. */
function chiNorms(sh: Shape, D: number): Float64Array {
  const out = alloc.f64(sh.B, 'the output');
  if (Number.isInteger(D) && D <= 4096) {
    const z = randn(sh.B * D, { seed: sh.seed, stream: 2, dim: D, offset: sh.offset });
    for (let i = 0; i < sh.B; i++) {
      let s = 0;
      for (let k = 0; k < D; k++) s += z[i * D + k] ** 2;
      out[i] = Math.sqrt(s);
    }
    return out;
  }
  const z = randn(sh.B, { seed: sh.seed, stream: 2, dim: 1, offset: sh.offset });
  const c = 2 / (9 * D);
  for (let i = 0; i < sh.B; i++) out[i] = Math.sqrt(D * Math.max(0, 1 - c + z[i] * Math.sqrt(c)) ** 3);
  return out;
}

const GAUSSIAN: GaussianKernel = Object.freeze({ kind: 'gaussian' as const, ...methods('gaussian', 0, 'tanh') });

/** The Gaussian kernel (the default everywhere). */
export function gaussian(): GaussianKernel {
  return GAUSSIAN;
}

/**
 * The Poisson-flow kernel; D defaults to 1. Perturbations use exact chi draws of ||eps_D|| for
 * integer D up to 4096 and the Wilson-Hilferty approximation above.
 */
export function poisson(options: { D?: number } = {}): PoissonKernel {
  const o = is.options<{ D: number }>(options, 'options');
  const D = o.D === undefined ? 1 : is.scalar(o.D, 'options.D', 'positive');
  return Object.freeze({ kind: 'poisson' as const, D, ...methods('poisson', D, 'tanh') });
}

/** A radial-CDF kernel: 'tanh' or 'exp'. */
export function radial(family: 'tanh' | 'exp'): RadialKernel {
  if (family !== 'tanh' && family !== 'exp') throw is.typeError("'tanh' or 'exp'", 'family', family);
  return Object.freeze({ kind: 'radial' as const, family, ...methods('radial', 0, family) });
}

/** Poisson radii aligned with Gaussian noise levels, r = sigma sqrt(D) (as PFGM++ does). */
export function poissonRadii(sigmas: ArrayLike<number>, D: number): Float64Array {
  is.scalar(D, 'D', 'positive');
  return Float64Array.from(sigmas, (s) => s * Math.sqrt(D));
}

/**
 * A Gaussian noise grid carried over to a kernel's own scale tau, so the same grid drives every
 * kernel: Gaussian tau = sigma; Poisson r = sigma sqrt(D) (PFGM++); radial t = sigma sqrt(dim)
 * (the radius of a radial-CDF kernel is t times a d-independent variable of mean 1 for exp and
 * ln 2 for tanh, while a Gaussian's is about sigma sqrt(d)).
 */
export function kernelScales(kernel: Kernel | 'gaussian', sigmas: ArrayLike<number>, dim: number): Float64Array {
  is.integer(dim, 'dim', 1);
  if (kernel === 'gaussian' || kernel.kind === 'gaussian') return Float64Array.from(sigmas);
  if (kernel.kind === 'poisson') return poissonRadii(sigmas, kernel.D);
  if (kernel.kind === 'radial') return Float64Array.from(sigmas, (s) => s * Math.sqrt(dim));
  throw is.typeError('a kernel from gaussian(), poisson() or radial()', 'kernel', kernel);
}

/** The kernel option validated and encoded for the binding. */
export function kernelArg(v: unknown, name = 'options.kernel'): KernelArg {
  if (v === undefined || v === 'gaussian') return 0;
  if (is.isPlainObject(v)) {
    const k = v as { kind?: unknown; D?: unknown; family?: unknown };
    if (k.kind === 'gaussian') return 0;
    if (k.kind === 'poisson') return [1, is.scalar(k.D, `${name}.D`, 'positive')];
    if (k.kind === 'radial' && (k.family === 'tanh' || k.family === 'exp')) return k.family === 'tanh' ? 2 : 3;
  }
  throw is.typeError("a kernel (gaussian(), poisson({ D }), radial('tanh' | 'exp'))", name, v);
}

/** True for the Gaussian kernel (the only one with score and divergence outputs and alpha). */
export function isGaussian(arg: KernelArg): boolean {
  return arg === 0;
}
