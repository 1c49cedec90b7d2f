/**
 * Kernels of the self-normalized estimator: a kernel is its log-weight as a function of the
 * squared distance r^2 = ||x - alpha y||^2, with its normalising constant (MATH.md
 * sections 2 and 4). The option called `sigma` is the kernel's scale for every kernel.
 */
import * as is from './is';

/** The Gaussian kernel: log p(x | y) = -r^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2). */
export interface GaussianKernel {
  readonly kind: 'gaussian';
}

export type Kernel = GaussianKernel;

const GAUSSIAN: GaussianKernel = Object.freeze({ kind: 'gaussian' as const });

/** The Gaussian kernel (the default everywhere). */
export function gaussian(): GaussianKernel {
  return GAUSSIAN;
}

/** Native id of a kernel option (`undefined`, `'gaussian'` or a kernel object). */
export function kernelId(v: unknown, name = 'options.kernel'): number {
  if (v === undefined || v === 'gaussian') return 0;
  if (is.isPlainObject(v) && (v as { kind?: unknown }).kind === 'gaussian') return 0;
  throw is.typeError("a kernel (gaussian() or 'gaussian')", name, v);
}
