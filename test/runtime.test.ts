import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { capabilities, perturb, perturbAsync, randn, setThreads, ScorefieldError } from '../lib/index';
import { bitsEqual, rand } from './helpers/reference';

const root = path.join(__dirname, '..');

test('capabilities reports the SIMD path and the pool', (t) => {
  const c = capabilities();
  t.true(c.simdAvailable.includes(c.simd));
  t.is(c.simdAvailable[c.simdAvailable.length - 1], 'scalar');
  t.true(c.threads >= 1 && c.hardwareThreads >= 1);
  t.true(['x64', 'arm64', 'other'].includes(c.arch));
  t.regex(c.addon, /scorefield\.node$/);
  if (process.env.SCOREFIELD_NATIVE) t.is(c.addon, path.resolve(process.env.SCOREFIELD_NATIVE));
  if (c.arch === 'x64') t.true(c.simdAvailable.every((l) => ['avx512', 'avx2', 'scalar'].includes(l)));
});

test('SCOREFIELD_SIMD caps the level chosen at load, in a fresh process', (t) => {
  for (const level of capabilities().simdAvailable) {
    const out = execFileSync(process.execPath, ['-e', "console.log(require('./dist/cjs/index.js').capabilities().simd)"], {
      cwd: root,
      env: { ...process.env, SCOREFIELD_SIMD: level },
    })
      .toString()
      .trim();
    t.is(out, level);
  }
});

test('SCOREFIELD_THREADS sizes the pool in a fresh process', (t) => {
  const out = execFileSync(process.execPath, ['-e', "console.log(require('./dist/cjs/index.js').capabilities().threads)"], {
    cwd: root,
    env: { ...process.env, SCOREFIELD_THREADS: '3' },
  });
  t.is(out.toString().trim(), '3');
});

test('CommonJS and ESM entry points expose the same module instance', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cjs = require(path.join(root, 'dist/cjs/index.js'));
  const esm = await import(path.join(root, 'dist/esm/index.mjs'));
  t.is(esm.perturb, cjs.perturb);
  t.is(esm.ScorefieldError, cjs.ScorefieldError);
  t.true(typeof esm.schedules.karrasSigmas === 'function');
  const err = t.throws(() => esm.perturb([1], new Float32Array(1), 1, 1));
  t.true(err instanceof cjs.ScorefieldError);
});

test('the addon loads and computes in worker threads (context-aware), in parallel with the main thread', async (t) => {
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const sf = require(${JSON.stringify(path.join(root, 'dist/cjs/index.js'))});
    const x0 = new Float32Array(workerData.n).fill(1);
    const eps = sf.randn(workerData.n, { seed: workerData.seed });
    sf.perturbAsync(x0, eps, 0.5, 2).then((r) => parentPort.postMessage(Array.from(r.subarray(0, 4))));
  `;
  const run = (seed: number) =>
    new Promise<number[]>((resolve, reject) => {
      const w = new Worker(src, { eval: true, workerData: { n: 100000, seed } });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
  const [a, b] = await Promise.all([run(1), run(2)]);
  const eps1 = randn(100000, { seed: 1 });
  const eps2 = randn(100000, { seed: 2 });
  for (let k = 0; k < 4; k++) {
    t.is(a[k], Math.fround(0.5 + 2 * eps1[k]));
    t.is(b[k], Math.fround(0.5 + 2 * eps2[k]));
  }
});

test.serial('many async calls in flight while the pool is resized: every result is right', async (t) => {
  const d = 50000;
  const x0 = rand(d, 1);
  const eps = rand(d, 2);
  const want = perturb(x0, eps, 0.3, 0.7);
  const jobs: Promise<Float32Array>[] = [];
  for (let i = 0; i < 200; i++) {
    jobs.push(perturbAsync(x0, eps, 0.3, 0.7));
    if (i % 50 === 0) setThreads((i / 50) % 3 + 1);
  }
  const results = await Promise.all(jobs);
  setThreads(capabilities().hardwareThreads);
  t.true(results.every((r) => bitsEqual(r, want)));
});

test('errors thrown are instances of the hierarchy with a code', (t) => {
  const e = t.throws(() => perturb(new Float32Array(2), new Float32Array(3), 1, 1));
  t.true(e instanceof ScorefieldError);
  t.is((e as ScorefieldError).code, 'ERR_SCOREFIELD_SHAPE');
  t.is(e?.name, 'ScorefieldShapeError');
});
