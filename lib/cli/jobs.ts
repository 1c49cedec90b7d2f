/**
 * The jobs behind the `scorefield` command, as plain async functions (the command line in
 * main.ts only parses options and prints): `sample` draws samples from the empirical score of a
 * dataset and writes samples.npy and pictures; `compare` draws Euler against Heun, and the
 * kernels against each other, on a 2-d set at equal evaluations.
 */
import { accessSync, constants as fsConstants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import * as datasets from '../datasets';
import { ScorefieldAbortError, ScorefieldFileError, ScorefieldRangeError } from '../errors';
import { ReferenceSet } from '../estimator';
import { gaussian, kernelScales, poisson, radial, type Kernel } from '../kernels';
import { writeGroup } from '../files';
import * as npy from '../npy';
import { setThreads, capabilities } from '../runtime';
import { sampleEuler, sampleHeun } from '../samplers';
import { karrasSigmas } from '../schedules';
import { prior } from '../sampling';
import { nearestDistancesAsync } from './nearest';
import { imageGrid, scatterPanels, type Image } from './render';

export type DatasetName = 'mnist' | 'moons' | 'spirals' | 'gmm';
export type KernelName = 'gaussian' | 'poisson' | 'tanh' | 'exp';
export type SolverName = 'euler' | 'heun';

export interface SampleJob {
  /** A .npy file (2-d float32/float64, C order) used instead of `dataset`. */
  data?: string;
  /** Sample a sharded set served by `scorefield worker`s through this Redis (with `name`) instead of local data. */
  redis?: string;
  /** The sharded set's name (with `redis`). */
  name?: string;
  /** With `redis`: how long to wait for workers covering the whole set (ms). */
  wait?: number;
  dataset: DatasetName;
  /** Use only the first `limit` rows of the dataset. */
  limit?: number;
  kernel: KernelName;
  /** Poisson's extra dimensions D. */
  D: number;
  solver: SolverName;
  steps: number;
  batch: number;
  seed: number;
  threads?: number;
  out: string;
}

export interface StepEvent {
  step: number;
  total: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  onStep?: (e: StepEvent) => void;
}

export interface SampleSummary {
  command: 'sample';
  dataset: { name: string; n: number; dim: number };
  kernel: KernelName;
  D: number | null;
  solver: SolverName;
  steps: number;
  batch: number;
  seed: number;
  threads: number;
  simd: string;
  /** Wall time of the whole job (loading, sampling, writing), and of the sampling loop alone. */
  seconds: number;
  samplingSeconds: number;
  /** Denoiser (estimator) evaluations per sample. */
  nfe: number;
  samplesPerSecond: number;
  /** Distance of each sample to its nearest training row: mean and minimum over the batch (null for a sharded set, whose rows stay on the workers). */
  nearest: { mean: number; min: number } | null;
  /** Median ESS over the batch at the last three evaluations (the smallest noise levels). */
  essLastSteps: number[];
  /** The files written (together); a picture that could not be drawn is null, and said so in warnings. */
  files: { samples: string; picture: string | null; trajectories: string | null };
  /** Size of samples.png in pixels (null when it could not be drawn). */
  pictureSize: { width: number; height: number } | null;
  /** What the run could not do (a picture that could not be drawn). */
  warnings: string[];
}

/** The dataset a job names, as float32 rows. */
export function loadDataset(job: Pick<SampleJob, 'data' | 'dataset' | 'limit' | 'seed'>): datasets.Dataset {
  let set: datasets.Dataset;
  if (job.data !== undefined) {
    const m = npy.read(job.data);
    set = { data: m.data, n: m.rows, dim: m.cols, labels: new Uint8Array(m.rows), name: job.data };
  } else if (job.dataset === 'mnist') {
    set = datasets.mnist({ limit: job.limit });
  } else {
    set = datasets[job.dataset]({ n: job.limit ?? 2000, seed: job.seed });
  }
  if (job.limit !== undefined && job.limit < set.n) {
    set = { ...set, n: job.limit, data: set.data.slice(0, job.limit * set.dim), labels: set.labels.slice(0, job.limit) };
  }
  return set;
}

export function makeKernel(name: KernelName, D: number): Kernel {
  switch (name) {
    case 'gaussian':
      return gaussian();
    case 'poisson':
      return poisson({ D });
    default:
      return radial(name);
  }
}

/** The EDM grid (Karras sigmas, 0.002 .. 80, rho 7) in the kernel's own scale. */
export function gridFor(kernel: Kernel, steps: number, dim: number): Float64Array {
  return kernelScales(kernel, karrasSigmas(steps), dim);
}

export interface Run {
  x: Float32Array;
  nfe: number;
  seconds: number;
  /** Median ESS of the batch at every evaluation. */
  ess: number[];
  /** x after every step for the first `keep` samples (row-major per step). */
  path: Float32Array[];
}

/** What a sampling run needs of a set: in-process (ReferenceSet) or sharded (ShardedReferenceSet). */
export interface EstimatorSet {
  readonly dim: number;
  estimateAsync(x: Float32Array, options: { sigma: number; kernel: Kernel; outputs: ['mean', 'ess'] }, signal?: AbortSignal): Promise<{ mean: Float32Array; ess: Float32Array }>;
}

/** One sampling run driven step by step from JS (progress, ESS and trajectories per step). */
export async function run(
  ref: EstimatorSet,
  kernel: Kernel,
  solver: SolverName,
  sigmas: Float64Array,
  batch: number,
  seed: number,
  keep: number,
  opts: RunOptions,
): Promise<Run> {
  const dim = ref.dim;
  const x0 = prior(kernel, batch, dim, sigmas[0], { seed });
  const ess: number[] = [];
  let nfe = 0;
  const denoiser = async (x: Float32Array, sigma: number) => {
    const r = await ref.estimateAsync(x, { sigma, kernel, outputs: ['mean', 'ess'] }, opts.signal);
    nfe++;
    ess.push(median(r.ess));
    return r.mean;
  };
  const trajectory: Float32Array[] = [];
  const total = sigmas.length - 1;
  const t0 = performance.now();
  const sampler = solver === 'heun' ? sampleHeun : sampleEuler;
  const x = await sampler(denoiser, x0, sigmas, {
    signal: opts.signal,
    trajectory: keep > 0 ? trajectory : undefined,
    onStep: (step) => opts.onStep?.({ step: step + 1, total }),
  });
  const path = trajectory.map((t) => t.slice(0, keep * dim));
  return { x, nfe, seconds: (performance.now() - t0) / 1000, ess, path };
}

function median(v: ArrayLike<number>): number {
  const s = Float64Array.from(v).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function validate(job: SampleJob): void {
  if (!(Number.isInteger(job.steps) && job.steps >= 1)) throw new ScorefieldRangeError(`Expected a positive integer for --steps but received ${job.steps}`);
  if (!(Number.isInteger(job.batch) && job.batch >= 1)) throw new ScorefieldRangeError(`Expected a positive integer for --batch but received ${job.batch}`);
  if (!(job.D > 0)) throw new ScorefieldRangeError(`Expected a positive number for --D but received ${job.D}`);
}

/**
 * mkdir -p, one component at a time (Node 20's recursive mkdirSync never returns on /proc,
 * which answers every mkdir there with ENOENT).
 */
function makeDirs(dir: string): void {
  const abs = resolve(dir);
  if (existsSync(abs)) return;
  const parent = dirname(abs);
  if (parent !== abs) makeDirs(parent);
  mkdirSync(abs);
}

/** The output directory: created if missing; it must be a writable directory. */
export function checkOutDir(out: string): void {
  try {
    if (existsSync(out) && !statSync(out).isDirectory()) {
      throw new ScorefieldFileError(`Expected a directory for --out but received ${out}, which exists and is not one`, 'ERR_SCOREFIELD_FILE');
    }
    makeDirs(out);
    accessSync(out, fsConstants.W_OK);
  } catch (err) {
    if (err instanceof ScorefieldFileError) throw err;
    throw new ScorefieldFileError(`Expected a writable directory for --out but received ${out} (${(err as Error).message})`, 'ERR_SCOREFIELD_FILE', { cause: err });
  }
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ScorefieldAbortError('The job was aborted', { cause: signal.reason });
}

/** `scorefield sample`: samples, a picture, samples.npy, and the summary. */
export async function sample(job: SampleJob, opts: RunOptions = {}): Promise<SampleSummary> {
  const start = performance.now();
  validate(job);
  checkOutDir(job.out);  // before any work: a run must not end with nowhere to write
  if (job.threads !== undefined) setThreads(job.threads);
  if (job.redis !== undefined) return sampleSharded(job, opts, start);
  const set = loadDataset(job);
  if (job.batch * set.dim > 2 ** 32) {
    throw new ScorefieldRangeError(`Expected --batch x dim (${set.dim}) at most 2^32 values for --batch but received ${job.batch}`);
  }
  const kernel = makeKernel(job.kernel, job.D);
  const ref = await ReferenceSet.createAsync(set.data, set.dim);
  const sigmas = gridFor(kernel, job.steps, set.dim);
  const twoD = set.dim === 2;
  const keep = twoD ? Math.min(job.batch, 16) : 0;
  const r = await run(ref, kernel, job.solver, sigmas, job.batch, job.seed, keep, opts);
  const near = await nearestDistancesAsync(r.x, set.data, set.dim, opts.signal);
  const files = { samples: join(job.out, 'samples.npy'), picture: join(job.out, 'samples.png') as string | null, trajectories: null as string | null };
  // Every output is prepared in memory, then all are written together (writeGroup): a run
  // leaves its files or none. A picture that cannot be drawn is left out (and said so); the
  // samples are always written.
  const outputs: Array<[string, Uint8Array]> = [[files.samples, npy.encode(r.x, job.batch, set.dim)]];
  const warnings: string[] = [];
  const draw = (what: string, f: () => Image): Image | null => {
    checkAborted(opts.signal);
    try {
      return f();
    } catch (err) {
      warnings.push(`${what} could not be drawn: ${(err as Error).message}`);
      return null;
    }
  };
  const side = Math.round(Math.sqrt(set.dim));
  const picture = draw('samples.png', () => {
    if (side * side === set.dim && side >= 8) return imageGrid(r.x, job.batch, side, Math.max(1, Math.round(112 / side)));
    const title = twoD ? `${set.name}: ${job.batch} samples` : `${set.name}: first two coordinates`;
    return scatterPanels([{ title, subtitle: `${job.kernel} kernel, ${job.solver}, ${r.nfe} evaluations`, data: firstTwo(set.data, set.dim), samples: firstTwo(r.x, set.dim) }]);
  });
  if (picture) outputs.push([files.picture!, picture.png]);
  else files.picture = null;
  if (twoD) {
    const paths = Array.from({ length: keep }, (_, i) => Float32Array.from(r.path.flatMap((p) => [p[2 * i], p[2 * i + 1]])));
    const traj = draw('trajectories.png', () =>
      scatterPanels([{ title: `${set.name}: ODE trajectories of ${keep} samples`, subtitle: `${job.kernel} kernel, ${job.solver}, ${job.steps} steps`, data: set.data, paths }]),
    );
    if (traj) {
      files.trajectories = join(job.out, 'trajectories.png');
      outputs.push([files.trajectories, traj.png]);
    }
  }
  checkAborted(opts.signal);
  writeGroup(outputs);
  const nearest = { mean: near.reduce((a, b) => a + b, 0) / near.length, min: near.reduce((a, b) => Math.min(a, b), Infinity) };
  return summary(job, { name: set.name, n: set.n, dim: set.dim }, r, start, nearest, files, picture, warnings);
}

/** The summary of a `scorefield sample` run (printed, or with --json as one JSON object). */
function summary(
  job: SampleJob,
  dataset: SampleSummary['dataset'],
  r: { seconds: number; nfe: number; ess: number[] },
  start: number,
  nearest: SampleSummary['nearest'],
  files: SampleSummary['files'],
  picture: Image | null,
  warnings: string[],
): SampleSummary {
  return {
    command: 'sample',
    dataset,
    kernel: job.kernel,
    D: job.kernel === 'poisson' ? job.D : null,
    solver: job.solver,
    steps: job.steps,
    batch: job.batch,
    seed: job.seed,
    threads: capabilities().threads,
    simd: capabilities().simd,
    seconds: (performance.now() - start) / 1000,
    samplingSeconds: r.seconds,
    nfe: r.nfe,
    samplesPerSecond: job.batch / r.seconds,
    nearest,
    essLastSteps: r.ess.slice(-3),
    files,
    pictureSize: picture ? { width: picture.width, height: picture.height } : null,
    warnings,
  };
}

/** `scorefield sample --redis URL --name NAME`: the same job against a sharded set (no nearest-row distances). */
async function sampleSharded(job: SampleJob, opts: RunOptions, start: number): Promise<SampleSummary> {
  // loaded here only: bullmq and ioredis are not needed by anything else
  const { ShardedReferenceSet } = await import('../distributed/index');
  const set = await ShardedReferenceSet.connect({ connection: job.redis!, name: job.name ?? '', wait: job.wait ?? 0 });
  try {
    if (job.batch * set.dim > 2 ** 32) {
      throw new ScorefieldRangeError(`Expected --batch x dim (${set.dim}) at most 2^32 values for --batch but received ${job.batch}`);
    }
    const kernel = makeKernel(job.kernel, job.D);
    const sigmas = gridFor(kernel, job.steps, set.dim);
    const r = await run(set, kernel, job.solver, sigmas, job.batch, job.seed, 0, opts);
    const files = { samples: join(job.out, 'samples.npy'), picture: join(job.out, 'samples.png') as string | null, trajectories: null as string | null };
    const outputs: Array<[string, Uint8Array]> = [[files.samples, npy.encode(r.x, job.batch, set.dim)]];
    const warnings: string[] = [];
    const side = Math.round(Math.sqrt(set.dim));
    let picture: Image | null = null;
    try {
      picture =
        side * side === set.dim && side >= 8
          ? imageGrid(r.x, job.batch, side, Math.max(1, Math.round(112 / side)))
          : scatterPanels([{ title: `${job.name}: first two coordinates`, subtitle: `${job.kernel} kernel, ${job.solver}, ${r.nfe} evaluations`, data: new Float32Array(0), samples: firstTwo(r.x, set.dim) }]);
    } catch (err) {
      warnings.push(`samples.png could not be drawn: ${(err as Error).message}`);
    }
    if (picture) outputs.push([files.picture!, picture.png]);
    else files.picture = null;
    checkAborted(opts.signal);
    writeGroup(outputs);
    const where = job.redis!.replace(/\/\/[^@/]*@/, '//'); // no password in the summary
    return summary(job, { name: `${job.name} (sharded: ${set.shards.length} shards on ${where})`, n: set.size, dim: set.dim }, r, start, null, files, picture, warnings);
  } finally {
    await set.close();
  }
}

export function firstTwo(x: Float32Array, dim: number): Float32Array {
  if (dim === 2) return x;
  const n = x.length / dim;
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[2 * i] = x[i * dim];
    out[2 * i + 1] = dim > 1 ? x[i * dim + 1] : 0;
  }
  return out;
}
