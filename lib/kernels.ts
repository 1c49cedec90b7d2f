/**
 * Kernels of the self-normalized estimator: a kernel is its log-weight as a function of the
 * squared distance r^2 = ||x - alpha y||^2, with its normalising constant (MATH.md sections 2
 * and 4). The option called `sigma` is the kernel's scale for every kernel: sigma for the
 * Gaussian, r for Poisson, t for the radial families.
 */
import * as is from './is';
import type { KernelArg } from './native';

/** The Gaussian kernel: log p(x | y) = -r^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2). */
export interface GaussianKernel {
  readonly kind: 'gaussian';
}

/**
 * The Poisson-flow kernel with D augmented dimensions (D = 1: the seed's gravity model; PFGM++
 * for other D): p_r(x | y) = C_{d,D} r^D / (||x - y||^2 + r^2)^((d+D)/2).
 */
export interface PoissonKernel {
  readonly kind: 'poisson';
  readonly D: number;
}

/**
 * A kernel built from a radial CDF psi_t(r) = F(r/t) (the seed's inverse construction):
 * F = tanh or 1 - exp(-u); p(x | y) = F'(r/t) / (t |S^(d-1)| r^(d-1)), r clamped below at
 * 1e-7 t (the weights are singular at r = 0 when d > 1).
 */
export interface RadialKernel {
  readonly kind: 'radial';
  readonly family: 'tanh' | 'exp';
}

export type Kernel = GaussianKernel | PoissonKernel | RadialKernel;

const GAUSSIAN: GaussianKernel = Object.freeze({ kind: 'gaussian' as const });

/** The Gaussian kernel (the default everywhere). */
export function gaussian(): GaussianKernel {
  return GAUSSIAN;
}

/** The Poisson-flow kernel; D defaults to 1. */
export function poisson(options: { D?: number } = {}): PoissonKernel {
  const o = is.options<{ D: number }>(options, 'options');
  const D = o.D === undefined ? 1 : is.scalar(o.D, 'options.D', 'positive');
  return Object.freeze({ kind: 'poisson' as const, D });
}

/** A radial-CDF kernel: 'tanh' or 'exp'. */
export function radial(family: 'tanh' | 'exp'): RadialKernel {
  if (family !== 'tanh' && family !== 'exp') throw is.typeError("'tanh' or 'exp'", 'family', family);
  return Object.freeze({ kind: 'radial' as const, family });
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
