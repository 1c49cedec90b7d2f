// Concurrency and lifetime (issue 8): thousands of calls in flight, several worker threads at
// once, a worker terminated mid-call, garbage collection while async work holds the only
// reference to its inputs, buffers transferred while a call runs.
import test from 'ava';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { capabilities, perturb, perturbAsync, randn, randnAsync, ReferenceSet, schedules, setMemoryLimit, stableTargets, stableTargetsAsync } from '../lib/index';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const root = path.join(__dirname, '..');
const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

const d = 8;
const ref = new ReferenceSet(randn(300 * d, { seed: 1, dim: d }), d);

test.serial('10,000 concurrent estimateAsync calls: every result equals the sync one, memory stays bounded', async (t) => {
  const calls = 10_000;
  const queries = Array.from({ length: 50 }, (_, i) => randn(2 * d, { seed: 100 + i, dim: d }));
  const want = queries.map((x) => ref.estimate(x, { sigma: 0.7, outputs: ['mean', 'logDensity'] }));
  gc();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const results = await Promise.all(Array.from({ length: calls }, (_, i) => ref.estimateAsync(queries[i % 50], { sigma: 0.7, outputs: ['mean', 'logDensity'] })));
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  let wrong = 0;
  results.forEach((r, i) => {
    if (!bitsEqual(r.mean, want[i % 50].mean) || !bitsEqual(r.logDensity, want[i % 50].logDensity)) wrong++;
  });
  t.is(wrong, 0);
  const growthMB = (peak - before) / 2 ** 20;
  t.log(`peak RSS growth during ${calls} calls in flight: ${growthMB.toFixed(1)} MB`);
  t.true(growthMB < 400, `${growthMB} MB`);
});

test.serial('async calls from four worker threads at once, next to the main thread, all correct', async (t) => {
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const sf = require(${JSON.stringify(path.join(root, 'dist/cjs/index.js'))});
    (async () => {
      const d = 8;
      const ref = await sf.ReferenceSet.createAsync(sf.randn(300 * d, { seed: 1, dim: d }), d);
      const x = sf.randn(16 * d, { seed: workerData.seed, dim: d });
      const jobs = [];
      for (let i = 0; i < 100; i++) {
        jobs.push(ref.estimateAsync(x, { sigma: 0.5, outputs: ['mean'] }).then((r) => r.mean));
        jobs.push(sf.perturbAsync(x, x, 0.5, 2));
      }
      const s = await ref.sample({ sigmas: sf.schedules.karrasSigmas(6), batch: 8, seed: workerData.seed });
      const out = await Promise.all(jobs);
      parentPort.postMessage({ mean: out[0], perturbed: out[1], sample: s.x, same: out.every((r, i) => Buffer.compare(Buffer.from(r.buffer), Buffer.from(out[i % 2].buffer)) === 0) });
    })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
  `;
  const run = (seed: number) =>
    new Promise<{ mean: Float32Array; perturbed: Float32Array; sample: Float32Array; same: boolean; error?: string }>((resolve, reject) => {
      const w = new Worker(src, { eval: true, workerData: { seed } });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
  const main = Promise.all(Array.from({ length: 100 }, () => ref.estimateAsync(randn(16 * d, { seed: 50, dim: d }), { sigma: 0.5 })));
  const results = await Promise.all([1, 2, 3, 4].map(run));
  await main;
  for (const [k, r] of results.entries()) {
    t.is(r.error, undefined);
    const x = randn(16 * d, { seed: k + 1, dim: d });
    t.true(r.same, 'every call in a worker gives the same bits');
    t.true(bitsEqual(r.mean, ref.estimate(x, { sigma: 0.5, outputs: ['mean'] }).mean));
    t.true(bitsEqual(r.perturbed, perturb(x, x, 0.5, 2)));
    t.true(bitsEqual(r.sample, (await ref.sample({ sigmas: schedules.karrasSigmas(6), batch: 8, seed: k + 1 })).x));
  }
});

test.serial('a worker terminated in the middle of long native calls: the process carries on', async (t) => {
  const src = `
    const { parentPort } = require('node:worker_threads');
    const sf = require(${JSON.stringify(path.join(root, 'dist/cjs/index.js'))});
    const d = 256;
    const ref = new sf.ReferenceSet(sf.randn(20000 * d, { seed: 3, dim: d }), d);
    for (let i = 0; i < 8; i++) ref.estimateAsync(sf.randn(256 * d, { seed: i, dim: d }), { sigma: 1 });
    ref.sample({ sigmas: sf.schedules.karrasSigmas(30), batch: 64, seed: 1, onProgress: () => {} });
    parentPort.postMessage('started');
  `;
  for (let round = 0; round < 3; round++) {
    const w = new Worker(src, { eval: true });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    await new Promise((r) => setTimeout(r, 20 * round));
    const code = await w.terminate();
    t.is(typeof code, 'number');
  }
  // the main thread's engine still works, and gives the right answer
  const x = randn(4 * d, { seed: 9, dim: d });
  const a = await ref.estimateAsync(x, { sigma: 0.3 });
  t.true(bitsEqual(a.mean, ref.estimate(x, { sigma: 0.3 }).mean));
});

test.serial('garbage collection while async work holds the only reference to its inputs', async (t) => {
  const n = 1 << 20;
  const want = perturb(randn(n, { seed: 1 }), randn(n, { seed: 2 }), 0.5, 2);
  const pending: Array<Promise<Float32Array>> = [];
  for (let i = 0; i < 8; i++) {
    // the inputs are created inline: only the native call references them
    pending.push(perturbAsync(randn(n, { seed: 1 }), randn(n, { seed: 2 }), 0.5, 2));
  }
  const estimates = Array.from({ length: 8 }, () => ref.estimateAsync(randn(64 * d, { seed: 5, dim: d }), { sigma: 0.4, outputs: ['mean'] }));
  const sample = ref.sample({ x: randn(32 * d, { seed: 6, dim: d }).map((v) => 80 * v), sigmas: schedules.karrasSigmas(12), seed: 3 });
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const results = await Promise.all(pending);
  t.true(results.every((r) => bitsEqual(r, want)));
  const e = await Promise.all(estimates);
  const eWant = ref.estimate(randn(64 * d, { seed: 5, dim: d }), { sigma: 0.4, outputs: ['mean'] }).mean;
  t.true(e.every((r) => bitsEqual(r.mean, eWant)));
  const s = await sample;
  const sWant = await ref.sample({ x: randn(32 * d, { seed: 6, dim: d }).map((v) => 80 * v), sigmas: schedules.karrasSigmas(12), seed: 3 });
  t.true(bitsEqual(s.x, sWant.x));
});

test.serial('a buffer transferred while an async call runs: ERR_SCOREFIELD_DETACHED, nothing written to it', async (t) => {
  const big = new ReferenceSet(randn(20000 * 64, { seed: 4, dim: 64 }), 64);
  const x = randn(128 * 64, { seed: 8, dim: 64 });
  const mean = new Float32Array(128 * 64);
  const p = big.estimateAsync(x, { sigma: 1, outputs: ['mean'], out: { mean } });
  const moved = structuredClone(mean.buffer, { transfer: [mean.buffer as ArrayBuffer] });
  await t.throwsAsync(p, { code: 'ERR_SCOREFIELD_DETACHED' });
  t.true(new Float32Array(moved).every((v) => v === 0), 'the staged result was not copied into the transferred memory');
  // an input transferred during the call
  const x2 = randn(128 * 64, { seed: 8, dim: 64 });
  const p2 = big.estimateAsync(x2, { sigma: 1, outputs: ['mean'] });
  structuredClone(x2.buffer, { transfer: [x2.buffer as ArrayBuffer] });
  await t.throwsAsync(p2, { code: 'ERR_SCOREFIELD_DETACHED' });
  // the sampler's x (read and written for the whole run)
  const x3 = randn(16 * 64, { seed: 9, dim: 64 });
  const p3 = perturbAsync(x3, x3, 1, 1);
  structuredClone(x3.buffer, { transfer: [x3.buffer as ArrayBuffer] });
  await t.throwsAsync(p3, { code: 'ERR_SCOREFIELD_DETACHED' });
  // everything still works
  t.is((await big.estimateAsync(x.slice(0, 64), { sigma: 1 })).mean.length, 64);
});

test.serial('setMemoryLimit: oversized requests are refused before allocating, with ERR_SCOREFIELD_LIMIT', async (t) => {
  const big = randn(20000 * 64, { seed: 1, dim: 64 });
  const set = new ReferenceSet(big, 64);
  const x = randn(256 * 64, { seed: 2, dim: 64 });
  const need = set.workingMemory(256);
  try {
    setMemoryLimit(need - 1);
    t.is(capabilities().memoryLimit, need - 1);
    t.is((t.throws(() => set.estimate(x, { sigma: 1 })) as { code?: string }).code, 'ERR_SCOREFIELD_LIMIT');
    await t.throwsAsync(set.estimateAsync(x, { sigma: 1 }), { code: 'ERR_SCOREFIELD_LIMIT', message: /at most \d+ bytes of working memory/ });
    await t.throwsAsync(set.sample({ sigmas: [1, 0], batch: 256 }), { code: 'ERR_SCOREFIELD_LIMIT' });
    // a copy of the set is refused under a cap below its size
    setMemoryLimit(Math.floor(set.byteLength / 2));
    t.is((t.throws(() => new ReferenceSet(big, 64)) as { code?: string }).code, 'ERR_SCOREFIELD_LIMIT');
    setMemoryLimit(need - 1);
    // a smaller request fits under the same cap
    t.is(set.estimate(x.subarray(0, 64 * 8), { sigma: 1 }).mean.length, 64 * 8);
    setMemoryLimit(need);
    t.is(set.estimate(x, { sigma: 1 }).mean.length, 256 * 64);
  } finally {
    setMemoryLimit(null);
  }
  t.is(capabilities().memoryLimit, 0);
});

test.serial('the memory limit holds for everything a call allocates: async private copies and JavaScript results', async (t) => {
  const set = new ReferenceSet(randn(2000 * 64, { seed: 1, dim: 64 }), 64);
  const x = randn(4096 * 64, { seed: 2, dim: 64 });
  const need = set.workingMemory(4096);
  try {
    // the sync call fits; the async one also needs its private copies of x and of the outputs
    setMemoryLimit(need + 1.5 * 4096 * 64 * 4);
    const mean = new Float32Array(4096 * 64);
    t.is(set.estimate(x, { sigma: 1, outputs: ['mean'], out: { mean } }).mean, mean);
    await t.throwsAsync(set.estimateAsync(x, { sigma: 1, outputs: ['mean'], out: { mean } }), { code: 'ERR_SCOREFIELD_LIMIT' });
    setMemoryLimit(2 ** 30);
    // results allocated in JavaScript are checked before allocating
    t.is((t.throws(() => randn(2 ** 31 + 1, { seed: 1 })) as { code?: string }).code, 'ERR_SCOREFIELD_LIMIT');
    await t.throwsAsync(set.sample({ sigmas: [1, 0], batch: 2 ** 31 }), { code: 'ERR_SCOREFIELD_LIMIT' });
    // elementwise async calls: their three private copies (1 MiB each) against a 2.5 MiB cap
    setMemoryLimit(2.5 * 2 ** 20);
    t.is(perturb(x, x, 1, 1).length, x.length);
    await t.throwsAsync(perturbAsync(x, x, 1, 1), { code: 'ERR_SCOREFIELD_LIMIT', message: /private copies/ });
  } finally {
    setMemoryLimit(null);
  }
  t.is(capabilities().memoryLimit, 0);
});

test.serial('SharedArrayBuffer-backed arrays work in every async call, zero-copy', async (t) => {
  const d = 16, B = 8;
  const set = new ReferenceSet(randn(2000 * d, { seed: 1, dim: d }), d);
  const shared = (n: number) => new Float32Array(new SharedArrayBuffer(n * 4));
  const x = shared(B * d);
  x.set(randn(B * d, { seed: 2, dim: d }));
  const mean = shared(B * d), score = shared(B * d);
  const want = set.estimate(x, { sigma: 0.5, outputs: ['mean', 'score'] });
  const r = await set.estimateAsync(x, { sigma: 0.5, outputs: ['mean', 'score'], out: { mean, score } });
  t.is(r.mean, mean);
  t.true(bitsEqual(mean, want.mean) && bitsEqual(score, want.score));
  const st = shared(B * d);
  t.is(await stableTargetsAsync(x, x, set, { sigma: 0.5, out: st }), st);
  t.true(bitsEqual(st, stableTargets(x, x, set, { sigma: 0.5 })));
  // a growable SharedArrayBuffer (Node 20's type definitions lack the options argument)
  const Growable = SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer;
  const g = new Float32Array(new Growable(64 * 4, { maxByteLength: 256 * 4 }));
  await randnAsync(g, { seed: 3 });
  t.true(bitsEqual(g, randn(64, { seed: 3 })));
  const p = shared(B * d);
  t.true(bitsEqual(await perturbAsync(x, x, 0.5, 2, p), perturb(x, x, 0.5, 2)));
});

test('SCOREFIELD_MEMORY_LIMIT takes units and refuses what it cannot read', (t) => {
  const read = (v: string) =>
    spawnSync(process.execPath, ['-e', `try { console.log(require('./dist/cjs/index.js').capabilities().memoryLimit) } catch (e) { console.log(e.code) }`], {
      cwd: path.join(__dirname, '..'),
      env: { ...process.env, SCOREFIELD_MEMORY_LIMIT: v },
      encoding: 'utf8',
    }).stdout.trim();
  t.is(read('1GB'), '1000000000');
  t.is(read('1GiB'), String(2 ** 30));
  t.is(read('512mib'), String(512 * 2 ** 20));
  t.is(read('123'), '123');
  t.is(read('lots'), 'ERR_SCOREFIELD_RANGE');
  t.is(read('1.5GB'), 'ERR_SCOREFIELD_RANGE');
});
