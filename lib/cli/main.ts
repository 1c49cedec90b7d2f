#!/usr/bin/env node
/**
 * The `scorefield` command. `scorefield sample` (the default) samples a dataset's empirical
 * score with the native estimator and writes samples.npy and pictures; `scorefield compare`
 * draws Euler against Heun and the kernels against each other on a 2-d set.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { resolve } from 'node:path';
import { ScorefieldError, ScorefieldRangeError, ScorefieldTypeError } from '../errors';
import type { ShardSource } from '../distributed/worker';
import { setThreads } from '../runtime';
import { compare, type CompareSummary } from './compare';
import { loadDataset, sample, type DatasetName, type RunOptions, type SampleSummary } from './jobs';

/** An integer option at least `min` (1: "a positive integer", 0: "a non-negative integer"). */
function intOption(name: string, min: 0 | 1) {
  const what = min === 1 ? 'a positive integer' : 'a non-negative integer';
  return (v: string): number => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`Expected ${what} for ${name}.`);
    return n;
  };
}
const positiveInt = (name: string) => intOption(name, 1);
const nonNegativeInt = (name: string) => intOption(name, 0);

function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`Expected a positive number for ${name}.`);
    return n;
  };
}

/**
 * Progress on stderr: a bar with steps and ETA on a terminal; otherwise a plain line at every
 * tenth of the steps; nothing with --json.
 */
function progress(enabled: boolean): { opts: Pick<RunOptions, 'onStep'>; stop: () => void } {
  if (!enabled) return { opts: {}, stop: () => {} };
  if (!process.stderr.isTTY) {
    return {
      opts: {
        onStep: ({ step, total }) => {
          const every = Math.max(1, Math.ceil(total / 10));
          if (step === 1 || step % every === 0 || step === total) process.stderr.write(`step ${step}/${total}\n`);
        },
      },
      stop: () => {},
    };
  }
  const bar = new SingleBar({
    format: '  sampling [{bar}] {value}/{total} steps | {duration_formatted} elapsed | ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 8,
  });
  let started = false;
  return {
    opts: {
      onStep: ({ step, total }) => {
        if (!started) {
          bar.start(total, 0);
          started = true;
        }
        bar.update(step);
      },
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** Runs a job with Ctrl-C wired to an AbortSignal: the job stops between steps, writing nothing. */
async function withInterrupt<T>(quiet: boolean, job: (opts: RunOptions) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSigint = () => controller.abort(new Error('interrupted (SIGINT)'));
  process.once('SIGINT', onSigint);
  const bar = progress(!quiet);
  try {
    return await job({ ...bar.opts, signal: controller.signal });
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

/** Runs a job with progress and Ctrl-C handling, then prints its summary (JSON or for people). */
async function runJob<T>(json: boolean | undefined, print: (summary: T) => void, job: (opts: RunOptions) => Promise<T>): Promise<void> {
  const summary = await withInterrupt(Boolean(json), job);
  if (json) process.stdout.write(JSON.stringify(summary) + '\n');
  else print(summary);
}

const fmt = (v: number, digits = 3) =>
  v === 0 ? '0' : Math.abs(v) >= 100 ? v.toFixed(1) : Math.abs(v) < 1e-3 ? v.toExponential(digits - 1) : v.toPrecision(digits);

function printSample(s: SampleSummary): void {
  const lines = [
    `scorefield sample: ${s.dataset.name} (${s.dataset.n} x ${s.dataset.dim}), ${s.kernel} kernel${s.D !== null ? ` (D = ${s.D})` : ''}, ${s.solver}, ${s.steps} steps, batch ${s.batch}, seed ${s.seed}`,
    `  time               ${fmt(s.seconds)} s in all, ${fmt(s.samplingSeconds)} s sampling (${s.threads} threads, ${s.simd})`,
    `  evaluations        ${s.nfe} per sample`,
    `  samples per second ${fmt(s.samplesPerSecond)}`,
    ...(s.nearest ? [`  nearest training   mean distance ${fmt(s.nearest.mean)}, minimum ${fmt(s.nearest.min)}`] : []),
    `  median ESS         ${s.essLastSteps.map((v) => fmt(v)).join(', ')} at the last ${s.essLastSteps.length} evaluations`,
    `  wrote              ${[s.files.samples, s.files.picture, s.files.trajectories].filter(Boolean).join(', ')}`,
    ...s.warnings.map((w) => `  warning            ${w}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function printCompare(s: CompareSummary): void {
  const lines = [`scorefield compare: ${s.dataset.name} (${s.dataset.n} points), batch ${s.batch}, seed ${s.seed}, ${fmt(s.seconds)} s`];
  lines.push('  panel (full EDM grid)   evaluations   mean nearest distance');
  for (const p of s.panels) lines.push(`  ${p.label.padEnd(24)}${String(p.nfe).padStart(11)}   ${fmt(p.nearestMean).padStart(21)}`);
  lines.push(`  order of accuracy (Gaussian kernel, grid 80 .. ${s.order.sigmaEnd}, RMS error against 400 Heun steps):`);
  lines.push('    evaluations        Euler         Heun');
  for (const r of s.order.rows) lines.push(`    ${String(r.nfe).padStart(11)}   ${fmt(r.euler).padStart(10)}   ${fmt(r.heun).padStart(10)}`);
  lines.push(`    fitted order      ${fmt(s.order.euler).padStart(7)}      ${fmt(s.order.heun).padStart(7)}`);
  lines.push(`  wrote ${s.files.picture}`);
  process.stdout.write(lines.join('\n') + '\n');
}

function rowRange(v: string): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(v.trim());
  const a = m ? Number(m[1]) : NaN;
  const b = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b <= a) throw new InvalidArgumentError('Expected a:b with integers a < b for --rows.');
  return [a, b];
}

/** --redis goes with --name, and replaces --data / --dataset / --limit. */
function checkRemote(o: { redis?: string; name?: string; data?: string; limit?: number }): string | undefined {
  if (o.redis === undefined) {
    if (o.name !== undefined) throw new InvalidArgumentError('Expected --redis with --name.');
    return undefined;
  }
  if (o.name === undefined) throw new InvalidArgumentError('Expected --name (the sharded set) with --redis.');
  if (o.data !== undefined || o.limit !== undefined) throw new InvalidArgumentError('Expected no --data or --limit with --redis (the rows are on the workers).');
  return o.redis;
}

/** `scorefield worker`: serves until SIGINT or SIGTERM, then deregisters and exits 0. */
async function serveShard(o: { redis: string; name: string; data?: string; dataset?: DatasetName; rows?: [number, number]; threads?: number; lockMs: number; stalledMs: number; json?: boolean }): Promise<void> {
  if ((o.data === undefined) === (o.dataset === undefined)) throw new ScorefieldTypeError('Expected exactly one of --data or --dataset for scorefield worker but received ' + (o.data === undefined ? 'neither' : 'both'));
  if (o.threads !== undefined) setThreads(o.threads);
  const { ShardWorker } = await import('../distributed/index');
  let shard: ShardSource;
  if (o.data !== undefined) {
    shard = { file: resolve(o.data), rows: o.rows };
  } else {
    const set = loadDataset({ dataset: o.dataset!, seed: 0 });
    const [a, b] = o.rows ?? [0, set.n];
    if (b > set.n) throw new ScorefieldRangeError(`Expected --rows within the ${set.n} rows of ${set.name} but received ${a}:${b}`);
    shard = { data: set.data.subarray(a * set.dim, b * set.dim), dim: set.dim, begin: a };
  }
  const worker = await ShardWorker.start({
    connection: o.redis,
    name: o.name,
    shards: [shard],
    lockDuration: o.lockMs,
    stalledInterval: o.stalledMs,
    onError: (err) => process.stderr.write(`scorefield worker: ${err.message}\n`),
  });
  const s = worker.shards[0];
  const where = o.redis.replace(/\/\/[^@/]*@/, '//');
  if (o.json) process.stdout.write(JSON.stringify({ event: 'serving', id: worker.id, pid: process.pid, name: o.name, ...s }) + '\n');
  else process.stdout.write(`scorefield worker: serving rows ${s.begin}:${s.end} (dim ${s.dim}, content ${s.hash.slice(0, 16)}) of set ${o.name} on ${where}; Ctrl-C stops\n`);
  await new Promise<void>((resolveStop) => {
    const stop = () => {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      resolveStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await worker.close();
  if (o.json) process.stdout.write(JSON.stringify({ event: 'stopped', id: worker.id }) + '\n');
  process.exit(0);
}

function fail(err: unknown): never {
  if ((err as { name?: string }).name === 'AbortError') {
    process.stderr.write('scorefield: interrupted between steps; no files were written\n');
    process.exit(130);
  }
  if (err instanceof ScorefieldError) {
    process.stderr.write(`scorefield: ${err.message} (${err.code})\n`);
    process.exit(2);
  }
  // an unexpected failure: its message, never a stack trace (SCOREFIELD_DEBUG=1 shows one)
  const e = err as { message?: string; code?: string; stack?: string };
  process.stderr.write(`scorefield: ${process.env.SCOREFIELD_DEBUG ? e?.stack : (e?.message ?? String(err))}${e?.code ? ` (${e.code})` : ''}\n`);
  process.exit(1);
}

const COMMANDS = ['sample', 'worker', 'compare', 'help'];

function version(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../package.json') as { version: string }).version;
  } catch {
    // dist/cjs/cli -> the package root is three levels up
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../../package.json') as { version: string }).version;
  }
}

export function program(): Command {
  const cmd = new Command('scorefield')
    .description('Score-based diffusion on the CPU: sample a dataset through its exact empirical score.')
    .showHelpAfterError('(run with --help for the options)')
    .version(version(), '-V, --version', 'print the version');

  cmd
    .command('sample', { isDefault: true })
    .description('sample the empirical score of a dataset (default: 10,000 MNIST digits) and write samples.npy and samples.png')
    .option('--data <file.npy>', 'a 2-d float32/float64 C-order .npy array (rows x dims) instead of --dataset')
    .addOption(new Option('--dataset <name>', 'built-in dataset').choices(['mnist', 'moons', 'spirals', 'gmm']).default('mnist'))
    .option('--limit <n>', 'mnist and --data: use the first n rows; moons, spirals, gmm: generate n points (default 2000)', positiveInt('--limit'))
    .addOption(new Option('--kernel <name>', 'kernel of the noising process').choices(['gaussian', 'poisson', 'tanh', 'exp']).default('gaussian'))
    .option('--D <n>', "Poisson kernel's extra dimensions", positiveNumber('--D'), 1)
    .addOption(new Option('--solver <name>', 'ODE solver').choices(['euler', 'heun']).default('heun'))
    .option('--steps <n>', 'steps of the EDM grid (Heun: 2 steps - 1 evaluations)', positiveInt('--steps'), 18)
    .option('--batch <n>', 'number of samples', positiveInt('--batch'), 64)
    .option('--seed <n>', 'seed of the prior draws (and of the 2-d datasets)', nonNegativeInt('--seed'), 0)
    .option('--threads <n>', 'native worker threads (default: all cores)', positiveInt('--threads'))
    .option('--out <dir>', 'output directory', '.')
    .option('--json', 'print a machine-readable summary on stdout (no progress bar)')
    .option('--redis <url>', 'sample a sharded set served by `scorefield worker`s through this Redis (redis:// or rediss://), with --name')
    .option('--name <name>', 'the sharded set (with --redis)')
    .option('--wait <ms>', 'with --redis: wait this long for workers covering the whole set', nonNegativeInt('--wait'), 0)
    .action((o) =>
      runJob(o.json, printSample, (run) =>
        sample(
          {
            redis: checkRemote(o),
            name: o.name,
            wait: o.wait,
            data: o.data === undefined ? undefined : resolve(o.data),
            dataset: o.dataset,
            limit: o.limit,
            kernel: o.kernel,
            D: o.D,
            solver: o.solver,
            steps: o.steps,
            batch: o.batch,
            seed: o.seed,
            threads: o.threads,
            out: o.out,
          },
          run,
        ),
      ),
    );

  cmd
    .command('worker')
    .description('serve rows of an .npy file as a shard of a sharded set (BullMQ on Redis) until interrupted')
    .requiredOption('--redis <url>', 'the Redis server (redis:// or rediss://, password and TLS pass through)')
    .requiredOption('--name <name>', 'the set this shard belongs to')
    .option('--data <file.npy>', 'a 2-d float32/float64 C-order .npy array (rows x dims)')
    .addOption(new Option('--dataset <name>', 'a built-in dataset instead of --data (as `sample` loads it)').choices(['mnist', 'moons', 'spirals', 'gmm']))
    .option('--rows <a:b>', 'serve rows a..b-1 of the file (they are rows a..b-1 of the set); default all', rowRange)
    .option('--threads <n>', 'native worker threads (default: all cores)', positiveInt('--threads'))
    .option('--lock-ms <n>', "BullMQ lock of a running job: a job whose worker died runs again after it", positiveInt('--lock-ms'), 30000)
    .option('--stalled-ms <n>', 'how often the stalled-job check runs', positiveInt('--stalled-ms'), 30000)
    .option('--json', 'print one JSON line when serving (and on stop)')
    .action((o) => serveShard(o).catch(fail));

  cmd
    .command('compare')
    .description('Euler vs Heun at equal evaluations, and every kernel with Heun, on a 2-d dataset (writes compare.png)')
    .addOption(new Option('--dataset <name>', '2-d dataset').choices(['moons', 'spirals', 'gmm']).default('moons'))
    .option('--steps <n>', 'Heun steps; Euler gets the same evaluations (2 steps - 1)', positiveInt('--steps'), 6)
    .option('--batch <n>', 'samples per panel', positiveInt('--batch'), 500)
    .option('--seed <n>', 'seed', nonNegativeInt('--seed'), 0)
    .option('--threads <n>', 'native worker threads', positiveInt('--threads'))
    .option('--out <dir>', 'output directory', '.')
    .option('--json', 'print a machine-readable summary on stdout')
    .action((o) =>
      runJob(o.json, printCompare, (run) =>
        compare({ dataset: o.dataset, steps: o.steps, batch: o.batch, seed: o.seed, threads: o.threads, out: o.out }, run),
      ),
    );
  return cmd;
}

if (require.main === module) {
  // `sample` is the default command, so commander would read an unknown command as a stray
  // argument of sample: name it instead
  const first = process.argv[2];
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    process.stderr.write(`scorefield: unknown command '${first}' (commands: ${COMMANDS.join(', ')}; run with --help)\n`);
    process.exit(1);
  }
  program().parseAsync(process.argv).catch(fail);
}
