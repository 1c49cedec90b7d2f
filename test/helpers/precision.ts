// The estimator's worst relative error against a float64 direct-difference reference, over a
// sweep of noise levels: the measurement behind the README's precision table. Used by
// test/estimator.test.ts (the 1e-4 bar), test/precision-table.test.ts (the README table is this
// measurement) and bench/precision.ts (`npm run bench:precision` prints the table).
import { ReferenceSet } from '../../lib/index';
import { mnistLike, noisyQueries, referenceEstimate, relErr, toy2d } from './estimator-ref';

export interface Worst {
  mean: number;
  score: number;
  logDensity: number;
}

export const SIGMAS = [0.002, 0.01, 0.05, 0.2, 1, 3, 10, 80];

export function sweep(Y: Float32Array, d: number, B: number, sigmas: number[], alpha = 1): Worst {
  const ref = new ReferenceSet(Y, d);
  const worst: Worst = { mean: 0, score: 0, logDensity: 0 };
  for (const sigma of sigmas) {
    const x = noisyQueries(Y, d, B, alpha, sigma, Math.round(sigma * 1000) + 7);
    const r = ref.estimate(x, { sigma, alpha, outputs: ['mean', 'score', 'logDensity'] });
    for (let i = 0; i < B; i++) {
      const want = referenceEstimate(Y, d, x.subarray(i * d, (i + 1) * d), alpha, sigma);
      worst.mean = Math.max(worst.mean, relErr(r.mean, want.mean, i * d));
      worst.score = Math.max(worst.score, relErr(r.score, want.score, i * d));
      const ld = Math.abs(r.logDensity[i] - want.logDensity) / Math.max(1, Math.abs(want.logDensity));
      worst.logDensity = Math.max(worst.logDensity, ld);
    }
  }
  return worst;
}

/** The README table's rows: label, and how each is measured. */
export const ROWS: Array<{ label: string; run: () => Worst }> = [
  { label: 'MNIST-like, 784 dims in [-1, 1]', run: () => sweep(mnistLike(600, 1), 784, 12, SIGMAS) },
  { label: '2-d toy set', run: () => sweep(toy2d(3000, 2), 2, 48, SIGMAS) },
  { label: '2-d toy set shifted by 10 (sigma 0.002 ... 80)', run: () => sweep(toy2d(3000, 3, 10), 2, 48, [0.002, 0.01, 0.1, 1, 80]) },
];

/** A cell as the README prints it. */
export const cell = (v: number) => v.toExponential(1);
