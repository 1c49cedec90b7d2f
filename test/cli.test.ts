// The `scorefield` command (lib/cli), run as a child process the way a user runs it.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { datasets, npy, ScorefieldAbortError } from '../lib/index';
import { sample } from '../lib/cli/jobs';
import { rawNpy } from './helpers/npy';

const root = join(__dirname, '..');
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
const tmp = () => mkdtempSync(join(tmpdir(), 'sf-cli-'));
/** The command as a child process, without blocking this worker's event loop (other tests here time signals). */
const cliAsync = (args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((res) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), ...args], { cwd: root });
    let stdout = '', stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => res({ status, stdout, stderr }));
  });

/** The --json summary's schema: every field, with its type. */
function checkSampleSummary(t: import('ava').ExecutionContext, s: Record<string, unknown>) {
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  t.is(s.command, 'sample');
  const ds = s.dataset as Record<string, unknown>;
  t.true(typeof ds.name === 'string' && num(ds.n) && num(ds.dim));
  for (const k of ['steps', 'batch', 'seed', 'threads', 'seconds', 'samplingSeconds', 'nfe', 'samplesPerSecond']) t.true(num(s[k]), k);
  t.true(['gaussian', 'poisson', 'tanh', 'exp'].includes(s.kernel as string));
  t.true(['euler', 'heun'].includes(s.solver as string));
  t.true(typeof s.simd === 'string');
  const near = s.nearest as Record<string, number>;
  t.true(num(near.mean) && num(near.min) && near.min <= near.mean && near.min >= 0);
  const ess = s.essLastSteps as number[];
  t.true(Array.isArray(ess) && ess.length === 3 && ess.every((v) => v >= 1 - 1e-6 && v <= (ds.n as number) + 1e-6));
  const files = s.files as Record<string, string | null>;
  t.true(typeof files.samples === 'string' && typeof files.picture === 'string');
  const size = s.pictureSize as Record<string, number>;
  t.true(num(size.width) && num(size.height));
}

test('sample --dataset moons --json: summary schema, samples.npy round-trips, PNGs decode to the stated size', (t) => {
  const out = tmp();
  const r = cli(['sample', '--dataset', 'moons', '--batch', '100', '--steps', '10', '--seed', '3', '--out', out, '--json']);
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr.replace(/npm warn.*\n/g, ''), '', 'no progress output with --json');
  const s = JSON.parse(r.stdout);
  checkSampleSummary(t, s);
  t.deepEqual([s.dataset, s.batch, s.steps, s.nfe, s.solver, s.kernel], [{ name: 'moons', n: 2000, dim: 2 }, 100, 10, 19, 'heun', 'gaussian']);
  const m = npy.read(join(out, 'samples.npy'));
  t.deepEqual([m.rows, m.cols, m.dtype], [100, 2, '<f4']);
  t.true(m.data.every(Number.isFinite));
  // the samples land on the moons: mean nearest distance as reported, and small
  t.true(s.nearest.mean < 0.02, String(s.nearest.mean));
  const png = PNG.sync.read(readFileSync(join(out, 'samples.png')));
  t.deepEqual([png.width, png.height], [s.pictureSize.width, s.pictureSize.height]);
  const traj = PNG.sync.read(readFileSync(s.files.trajectories));
  t.true(traj.width > 100 && traj.height > 100);
  t.deepEqual(readdirSync(out).sort(), ['samples.npy', 'samples.png', 'trajectories.png']);
});

test('sample on spirals and gmm with other kernels and Euler; the human summary names every field', (t) => {
  for (const [dataset, kernel, solver] of [['spirals', 'tanh', 'heun'], ['gmm', 'poisson', 'euler'], ['moons', 'exp', 'heun']]) {
    const out = tmp();
    const r = cli(['sample', '--dataset', dataset, '--kernel', kernel, '--solver', solver, '--batch', '50', '--steps', '12', '--out', out]);
    t.is(r.status, 0, r.stderr);
    for (const field of ['time', 'evaluations', 'samples per second', 'nearest training', 'median ESS', 'wrote']) t.true(r.stdout.includes(field), field);
    t.regex(r.stdout, new RegExp(`${dataset} \\(2000 x 2\\), ${kernel} kernel`));
    t.regex(r.stderr, /step 12\/12/, 'plain progress lines when stderr is not a terminal');
    t.is(npy.read(join(out, 'samples.npy')).rows, 50);
  }
});

test('sample on a 200-digit MNIST subset: an image grid of the stated size, samples near training digits', (t) => {
  const out = tmp();
  const r = cli(['sample', '--limit', '200', '--batch', '16', '--steps', '8', '--out', out, '--json']);
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  checkSampleSummary(t, s);
  t.deepEqual(s.dataset, { name: 'mnist', n: 200, dim: 784 });
  const png = PNG.sync.read(readFileSync(join(out, 'samples.png')));
  // 4 x 4 digits of 28 x 4 = 112 pixels with 2-pixel gutters
  t.deepEqual([png.width, png.height, s.pictureSize.width], [4 * 112 + 5 * 2, 4 * 112 + 5 * 2, 458]);
  const m = npy.read(join(out, 'samples.npy'));
  t.deepEqual([m.rows, m.cols], [16, 784]);
  t.true(m.data.every((v) => v > -1.01 && v < 1.01), 'pixels stay in [-1, 1]');
  t.is(s.files.trajectories, null);
  // the empirical score memorises: every sample ends on (or next to) a training digit
  t.true(s.nearest.mean < 0.5, String(s.nearest.mean));
});

test('--limit on a generated 2-d set generates that many points (more than the default 2000 too)', (t) => {
  for (const n of [150, 2500]) {
    const out = tmp();
    const r = cli(['sample', '--dataset', 'gmm', '--limit', String(n), '--batch', '8', '--steps', '4', '--out', out, '--json']);
    t.is(r.status, 0, r.stderr);
    t.deepEqual(JSON.parse(r.stdout).dataset, { name: 'gmm', n, dim: 2 });
  }
});

test('--data reads a float64 .npy (the samples come from it); bad files and options give clear errors', (t) => {
  const dir = tmp();
  // float64 data: 300 points on a circle of radius 5
  const buf = new Uint8Array(300 * 2 * 8);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < 300; i++) {
    view.setFloat64(16 * i, 5 * Math.cos(i), true);
    view.setFloat64(16 * i + 8, 5 * Math.sin(i), true);
  }
  writeFileSync(join(dir, 'circle.npy'), rawNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (300, 2), }", buf));
  const ok = cli(['sample', '--data', join(dir, 'circle.npy'), '--batch', '40', '--steps', '12', '--out', dir, '--json']);
  t.is(ok.status, 0, ok.stderr);
  const x = npy.read(join(dir, 'samples.npy')).data;
  for (let i = 0; i < 40; i++) t.true(Math.abs(Math.hypot(x[2 * i], x[2 * i + 1]) - 5) < 0.05);

  writeFileSync(join(dir, 'cube.npy'), rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", new Uint8Array(32)));
  writeFileSync(join(dir, 'half.npy'), rawNpy("{'descr': '<f2', 'fortran_order': False, 'shape': (4, 2), }", new Uint8Array(16)));
  const cases: Array<[string[], number, RegExp]> = [
    [['--data', join(dir, 'missing.npy')], 2, /missing\.npy but received no such file \(ERR_SCOREFIELD_FILE\)/],
    [['--data', join(dir, 'cube.npy')], 2, /Expected a 2-d array .* shape \(2, 2, 2\) \(ERR_SCOREFIELD_FORMAT\)/],
    [['--data', join(dir, 'half.npy')], 2, /Expected a float32 or float64 array .* received float16 \(ERR_SCOREFIELD_FORMAT\)/],
    [['--steps', 'ten'], 1, /Expected a positive integer for --steps/],
    [['--batch', '-3'], 1, /--batch/],
    [['--D', 'abc', '--kernel', 'poisson'], 1, /Expected a positive number for --D/],
    [['--kernel', 'laplace'], 1, /argument 'laplace' is invalid\. Allowed choices are gaussian, poisson, tanh, exp/],
    [['--dataset', 'cifar'], 1, /Allowed choices are mnist, moons, spirals, gmm/],
  ];
  for (const [args, status, message] of cases) {
    const r = cli(['sample', ...args, '--out', dir]);
    t.is(r.status, status, args.join(' '));
    t.regex(r.stderr, message, args.join(' '));
  }
  t.false(readdirSync(dir).some((f) => f.endsWith('.tmp')), 'no temporary files left behind');
});

test('--help lists every option; compare draws Euler vs Heun and the kernels and fits their orders', (t) => {
  const help = cli(['sample', '--help']);
  t.is(help.status, 0);
  for (const o of ['--data', '--dataset', '--kernel', '--D', '--solver', '--steps', '--batch', '--seed', '--threads', '--out', '--json', '--limit']) t.true(help.stdout.includes(o), o);
  const out = tmp();
  const r = cli(['compare', '--dataset', 'moons', '--batch', '200', '--out', out, '--json']);
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  t.is(s.command, 'compare');
  t.deepEqual(s.panels.map((p: { kernel: string; solver: string; nfe: number }) => `${p.kernel}/${p.solver}/${p.nfe}`), [
    'gaussian/euler/11',
    'gaussian/heun/11',
    'poisson/heun/11',
    'tanh/heun/11',
    'exp/heun/11',
  ]);
  t.log(`fitted orders: Euler ${s.order.euler.toFixed(2)}, Heun ${s.order.heun.toFixed(2)}`);
  t.true(s.order.euler > 0.8 && s.order.euler < 1.3, `Euler order ${s.order.euler}`);
  t.true(s.order.heun > 1.7, `Heun order ${s.order.heun}`);
  const last = s.order.rows[s.order.rows.length - 1];
  t.true(last.heun < last.euler, 'at the most evaluations Heun beats Euler');
  const png = PNG.sync.read(readFileSync(join(out, 'compare.png')));
  t.deepEqual([png.width, png.height], [3 * 320, 2 * (320 + 44)]);
});

test('an aborted job stops between steps and writes no file', async (t) => {
  const out = tmp();
  const controller = new AbortController();
  let steps = 0;
  await t.throwsAsync(
    sample(
      { dataset: 'moons', kernel: 'gaussian', D: 1, solver: 'heun', steps: 20, batch: 30, seed: 0, out },
      { signal: controller.signal, onStep: ({ step }) => (steps = step) === 3 && controller.abort() },
    ),
    { instanceOf: ScorefieldAbortError },
  );
  t.is(steps, 3);
  t.deepEqual(readdirSync(out), []);
});

test('Ctrl-C (SIGINT) on the command: exit 130, a message, no files', async (t) => {
  const out = tmp();
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'sample', '--dataset', 'moons', '--steps', '4000', '--batch', '256', '--out', out], { cwd: root });
  let stderr = '';
  const status = await new Promise<number | null>((resolve) => {
    child.stderr.on('data', (chunk: Buffer) => {
      const first = stderr === '' || !stderr.includes('step ');
      stderr += chunk.toString();
      if (first && stderr.includes('step ')) child.kill('SIGINT');
    });
    child.on('close', (code) => resolve(code));  // after stderr is drained ('exit' may come first)
  });
  t.is(status, 130, stderr);
  t.regex(stderr, /interrupted between steps; no files were written/);
  t.deepEqual(readdirSync(out), []);
});

test('datasets: seeded and balanced', (t) => {
  t.deepEqual(datasets.moons({ n: 50, seed: 4 }).data, datasets.moons({ n: 50, seed: 4 }).data);
  t.notDeepEqual(datasets.spirals({ n: 50, seed: 4 }).data, datasets.spirals({ n: 50, seed: 5 }).data);
  const m = datasets.mnist({ limit: 30 });
  t.deepEqual([m.n, m.dim], [30, 784]);
  t.deepEqual(Array.from(m.labels.slice(0, 12)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
  t.true(m.data.every((v) => v >= -1 && v <= 1));
  t.is(datasets.mnist().n, 10000);
});

test('2-d data with a tiny spread or far from the origin: pictures drawn, samples.npy written (no renderer panic)', async (t) => {
  const gm = datasets.gmm();
  const n = gm.data.length / 2;
  for (const [name, f] of [['tiny', (v: number) => v * 1e-4], ['far', (v: number) => v + 1e6]] as const) {
    const dir = tmp();
    const file = join(dir, `${name}.npy`);
    npy.write(file, gm.data.map(f), n, 2);
    const r = await cliAsync(['sample', '--data', file, '--batch', '64', '--out', dir, '--json']);
    t.is(r.status, 0, `${name}: ${r.stderr.slice(-1000)}`);
    t.deepEqual(readdirSync(dir).sort(), [`${name}.npy`, 'samples.npy', 'samples.png', 'trajectories.png'].sort(), name);
    t.is(npy.read(join(dir, 'samples.npy')).rows, 64);
    for (const png of ['samples.png', 'trajectories.png']) t.true(PNG.sync.read(readFileSync(join(dir, png))).width > 0);
  }
});

test('scatter pictures beyond 20,000 points subsample and say so; paths far off the canvas are cut at its edge', (t) => {
  const { scatterPanels, clipPolyline, MAX_POINTS } = require('../lib/cli/render') as typeof import('../lib/cli/render');
  const pts = new Float32Array(200_000).map((_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1);  // 100,000 points
  const img = scatterPanels([{ title: 'many points', data: pts, samples: pts, paths: [Float32Array.from([1e12, -1e12, 0, 0, 0.5, 0.5, NaN, 1, 0.2, 0.2])] }]);
  t.true(PNG.sync.read(Buffer.from(img.png)).width === img.width);
  t.true(MAX_POINTS < 100_000);
  // a segment from far outside into the square keeps its direction up to the edge
  const runs = clipPolyline([-1000, -1000, 50, 50, 60, 60], 0, 100);
  t.deepEqual(runs, [[0, 0, 50, 50, 60, 60]]);
  t.deepEqual(clipPolyline([-10, 50, 110, 50], 0, 100), [[0, 50, 100, 50]]);
  t.deepEqual(clipPolyline([-10, -10, -20, -20], 0, 100), []);
  t.deepEqual(clipPolyline([10, 10, NaN, 1, 20, 20, 30, 30], 0, 100), [[20, 20, 30, 30]]);
});

test('bad --out, --data and --batch are named before any work, never a stack trace; --version; unknown commands', async (t) => {
  const dir = tmp();
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  const cases: Array<[string[], RegExp]> = [
    [['sample', '--dataset', 'moons', '--out', file], /Expected a directory for --out .*\(ERR_SCOREFIELD_FILE\)/],
    [['sample', '--dataset', 'moons', '--out', '/proc/scorefield-nope/x'], /writable directory for --out .*ERR_SCOREFIELD_FILE/],
    [['compare', '--out', file], /for --out/],
    [['sample', '--data', '/dev/zero', '--out', dir], /regular \.npy file for \/dev\/zero but received a device/],
    [['sample', '--data', dir, '--out', dir], /received a directory/],
    [['sample', '--batch', '100000000', '--out', dir], /--batch x dim \(784\) .* for --batch/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  if (spawnSync('mkfifo', [join(dir, 'fifo')]).status === 0) cases.push([['sample', '--data', join(dir, 'fifo'), '--out', dir], /received a FIFO/]);
  for (const [args, message] of cases) {
    const r = await cliAsync(args);
    t.not(r.status, 0, args.join(' '));
    t.regex(r.stderr, message, args.join(' '));
    t.notRegex(r.stderr, /\n\s+at /, `no stack trace: ${args.join(' ')}`);
  }
  t.deepEqual(readdirSync(dir).filter((f) => !['a-file', 'fifo'].includes(f)), [], 'nothing written');
  const v = await cliAsync(['--version']);
  t.is(v.status, 0);
  t.is(v.stdout.trim(), JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
});

test('Ctrl-C after the last step (the nearest-neighbour analysis of a large batch) stops promptly, writing nothing', async (t) => {
  const out = tmp();
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'sample', '--dataset', 'mnist', '--steps', '2', '--batch', '1500', '--out', out], { cwd: root });
  let stderr = '';
  let killedAt = 0;
  const status = await new Promise<number | null>((resolve) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (!killedAt && stderr.includes('step 2/2')) {
        killedAt = performance.now();
        child.kill('SIGINT');
      }
    });
    child.on('close', (code) => resolve(code));
  });
  const seconds = (performance.now() - killedAt) / 1000;
  t.is(status, 130, stderr);
  t.true(seconds < 3, `stopped ${seconds.toFixed(1)} s after Ctrl-C`);
  t.deepEqual(readdirSync(out), []);
});
