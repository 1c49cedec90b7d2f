/**
 * `scorefield compare`: Euler against Heun at equal evaluations, and every kernel with Heun,
 * on a 2-d dataset, with the fitted orders of accuracy (compare.png and a summary).
 */
import { join } from 'node:path';
import { ScorefieldRangeError, ScorefieldShapeError } from '../errors';
import { ReferenceSet } from '../estimator';
import { writeAtomic } from '../files';
import { gaussian } from '../kernels';
import { setThreads } from '../runtime';
import { karrasSigmas } from '../schedules';
import { checkOutDir, gridFor, loadDataset, makeKernel, run, type DatasetName, type KernelName, type RunOptions, type SolverName } from './jobs';
import { nearestDistances } from './nearest';
import { scatterPanels, type Panel } from './render';

export interface CompareJob {
  dataset: Exclude<DatasetName, 'mnist'>;
  /** Heun steps; Euler gets the same number of evaluations (2 steps - 1). */
  steps: number;
  batch: number;
  seed: number;
  threads?: number;
  out: string;
}

export interface ComparePanel {
  label: string;
  kernel: KernelName;
  solver: SolverName;
  steps: number;
  nfe: number;
  /** Mean distance of the samples to their nearest data point. */
  nearestMean: number;
}

/** One row of the order-of-accuracy study (Gaussian kernel, grid ending at sigma = 0.5). */
export interface OrderRow {
  nfe: number;
  /** RMS distance to a 400-step Heun solution from the same prior draws, per solver. */
  euler: number;
  heun: number;
}

export interface CompareSummary {
  command: 'compare';
  dataset: { name: string; n: number; dim: number };
  batch: number;
  seed: number;
  seconds: number;
  panels: ComparePanel[];
  /** Errors at equal evaluations and the fitted orders (slope of log error against log NFE). */
  order: { sigmaEnd: number; rows: OrderRow[]; euler: number; heun: number };
  files: { picture: string };
}

const ORDER_SIGMA_END = 0.5;
const ORDER_REFERENCE_STEPS = 400;
const ORDER_HEUN_STEPS = [2, 4, 8, 16];

/** Least-squares slope of log y against log x. */
function logSlope(x: number[], y: number[]): number {
  const lx = x.map(Math.log), ly = y.map(Math.log);
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length, my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let num = 0, den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i] - mx) * (ly[i] - my);
    den += (lx[i] - mx) ** 2;
  }
  return num / den;
}

/**
 * `scorefield compare`: the picture shows Euler against Heun with the Gaussian kernel at equal
 * evaluations, then Heun with each kernel, all on the full EDM grid. The order of accuracy is
 * measured where the field is smooth: on the grid from 80 down to sigma = 0.5 (below it the
 * empirical ODE snaps each sample to one training point, and which one can flip with the
 * step size), against a 400-step Heun solution from the same starting points, at equal
 * evaluations (Heun n steps = 2n evaluations there, Euler 2n steps).
 */
export async function compare(job: CompareJob, opts: RunOptions = {}): Promise<CompareSummary> {
  const start = performance.now();
  if (!(Number.isInteger(job.steps) && job.steps >= 2)) throw new ScorefieldRangeError(`Expected an integer >= 2 for --steps but received ${job.steps}`);
  if (!(Number.isInteger(job.batch) && job.batch >= 1)) throw new ScorefieldRangeError(`Expected a positive integer for --batch but received ${job.batch}`);
  if ((job.dataset as string) === 'mnist') throw new ScorefieldShapeError('Expected a 2-d dataset (moons, spirals or gmm) for compare but received mnist');
  checkOutDir(job.out);
  if (job.threads !== undefined) setThreads(job.threads);
  const set = loadDataset({ dataset: job.dataset, seed: job.seed });
  const ref = await ReferenceSet.createAsync(set.data, 2);
  const eulerSteps = 2 * job.steps - 1;
  const plan: Array<{ label: string; kernel: KernelName; solver: SolverName; steps: number }> = [
    { label: `Euler, ${eulerSteps} steps`, kernel: 'gaussian', solver: 'euler', steps: eulerSteps },
    { label: `Heun, ${job.steps} steps`, kernel: 'gaussian', solver: 'heun', steps: job.steps },
    { label: 'Poisson D=1, Heun', kernel: 'poisson', solver: 'heun', steps: job.steps },
    { label: 'radial tanh, Heun', kernel: 'tanh', solver: 'heun', steps: job.steps },
    { label: 'radial exp, Heun', kernel: 'exp', solver: 'heun', steps: job.steps },
  ];
  const totalSteps = plan.reduce((a, p) => a + p.steps, 0) + ORDER_REFERENCE_STEPS + ORDER_HEUN_STEPS.reduce((a, n) => a + 3 * n, 0);
  let done = 0;
  const progress: RunOptions = {
    signal: opts.signal,
    onStep: () => opts.onStep?.({ step: ++done, total: totalSteps }),
  };
  const panels: ComparePanel[] = [];
  const pictures: Panel[] = [{ title: `${set.name}: data`, subtitle: `${set.n} points`, data: set.data }];
  for (const p of plan) {
    const kernel = makeKernel(p.kernel, 1);
    const r = await run(ref, kernel, p.solver, gridFor(kernel, p.steps, 2), job.batch, job.seed, 0, progress);
    const near = nearestDistances(r.x, set.data, 2);
    const nearestMean = near.reduce((a, b) => a + b, 0) / near.length;
    panels.push({ ...p, nfe: r.nfe, nearestMean });
    pictures.push({ title: p.label, subtitle: `${r.nfe} evaluations, mean nearest distance ${nearestMean.toFixed(4)}`, data: set.data, samples: r.x });
  }
  const g = gaussian();
  const grid = (n: number) => karrasSigmas(n + 1, { sigmaMin: ORDER_SIGMA_END, appendZero: false });
  const reference = (await run(ref, g, 'heun', grid(ORDER_REFERENCE_STEPS), job.batch, job.seed, 0, progress)).x;
  const rms = (x: Float32Array) => {
    let e2 = 0;
    for (let i = 0; i < x.length; i++) e2 += (x[i] - reference[i]) ** 2;
    return Math.sqrt(e2 / job.batch);
  };
  const rows: OrderRow[] = [];
  for (const n of ORDER_HEUN_STEPS) {
    const heun = await run(ref, g, 'heun', grid(n), job.batch, job.seed, 0, progress);
    const euler = await run(ref, g, 'euler', grid(2 * n), job.batch, job.seed, 0, progress);
    rows.push({ nfe: heun.nfe, euler: rms(euler.x), heun: rms(heun.x) });
  }
  const nfe = rows.map((r) => r.nfe);
  const order = { sigmaEnd: ORDER_SIGMA_END, rows, euler: -logSlope(nfe, rows.map((r) => r.euler)), heun: -logSlope(nfe, rows.map((r) => r.heun)) };
  const picture = join(job.out, 'compare.png');
  writeAtomic(picture, scatterPanels(pictures, 3).png);
  return {
    command: 'compare',
    dataset: { name: set.name, n: set.n, dim: 2 },
    batch: job.batch,
    seed: job.seed,
    seconds: (performance.now() - start) / 1000,
    panels,
    order,
    files: { picture },
  };
}
