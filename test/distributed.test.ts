/**
 * scorefield/distributed against a real Redis (Debian's redis-server, started here on a free
 * loopback port) and real `scorefield worker` child processes: sharded = single-machine for
 * every output and kernel, exact tiling checks, a worker SIGKILLed mid-sample, Redis stopped
 * mid-call, abort, a retried job merged once, malformed payloads.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { npy, poisson, radial, randn, ReferenceSet, schedules, type EstimateOutput } from '../lib/index';
import { ShardedReferenceSet } from '../lib/distributed/index';
import { PREFIX, queueName, keys } from '../lib/distributed/common';
import { startRedis, startScript, startWorker, type RedisServer, type WorkerProc } from './helpers/redis';

const dir = mkdtempSync(path.join(tmpdir(), 'sf-dist-'));
const d = 16;
const N = 3000;
// a 16-d mixture of 6 clusters (so posteriors are neither all sharp nor all broad)
const Y = (() => {
  const z = randn(N * d, { seed: 11 });
  const c = randn(6 * d, { seed: 12 });
  for (let i = 0; i < N; i++) for (let k = 0; k < d; k++) z[i * d + k] = 3 * c[(i % 6) * d + k] + 0.5 * z[i * d + k];
  return z;
})();
const file = path.join(dir, 'set.npy');
npy.write(file, Y, N, d);
const other = path.join(dir, 'other.npy');
npy.write(other, Y.map((v) => v + 1e-3), N, d);
const ref = new ReferenceSet(Y, d);

let redis: RedisServer;
const procs: WorkerProc[] = [];
function worker(name: string, f: string, rows: [number, number] | null, extra: string[] = []): WorkerProc {
  const w = startWorker(redis.url, name, f, rows, ['--threads', '1', ...extra]);
  procs.push(w);
  return w;
}
async function stopAll(ws: WorkerProc[]) {
  for (const w of ws) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.exited));
}

test.before(async () => {
  redis = await startRedis();
});
test.after.always(async () => {
  await stopAll(procs);
  await redis?.stop();
});

const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
function maxRel(a: Float32Array, b: Float32Array, scale = 1): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (scale + Math.abs(b[i])));
  return m;
}

test.serial('sharded = single-machine: every output, Gaussian (alpha, per-sample sigma), Poisson and radial kernels; repeated runs bit-identical; sample', async (t) => {
  const ws = [worker('eq', file, [0, 1000]), worker('eq', file, [1000, 2200]), worker('eq', file, [2200, 3000])];
  await Promise.all(ws.map((w) => w.ready));
  const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'eq' });
  try {
    t.is(set.size, N);
    t.is(set.dim, d);
    t.deepEqual(set.shards.map((s) => [s.begin, s.end]), [[0, 1000], [1000, 2200], [2200, 3000]]);
    const B = 24;
    const x = randn(B * d, { seed: 3 }).map((v, i) => Y[(i % (B * d)) + 37 * d] + 0.7 * v);
    const all: EstimateOutput[] = ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'];
    const perSample = Float32Array.from({ length: B }, (_, i) => 0.05 + 0.3 * i);
    const cases: Array<[string, Parameters<typeof ref.estimate>[1]]> = [
      ['gaussian', { sigma: 0.8, alpha: 0.9, outputs: all }],
      ['gaussian per-sample sigma', { sigma: perSample, outputs: all }],
      ['gaussian small sigma', { sigma: 0.02, outputs: all }],
      ['poisson D=2', { sigma: 2, kernel: poisson({ D: 2 }), outputs: ['mean', 'logDensity', 'ess', 'traceCov'] }],
      ['radial tanh', { sigma: 3, kernel: radial('tanh'), outputs: ['mean', 'ess'] }],
    ];
    for (const [label, o] of cases) {
      const want = ref.estimate(x, o) as Record<string, Float32Array>;
      const got = (await set.estimateAsync(x, o)) as Record<string, Float32Array>;
      const again = (await set.estimate(x, o)) as Record<string, Float32Array>;
      for (const k of Object.keys(want)) {
        // mean and score to float32 rounding; the second moments to the estimator's own 1e-4
        // (traceCov = E||y||^2 - ||mean||^2 cancels, in either process, within that bound)
        const tol = k === 'mean' || k === 'score' ? 1e-5 : 1e-4;
        const scale = k === 'score' || k === 'divergence' ? 1 + Math.max(...want[k].map(Math.abs)) * 1e-2 : 1;
        t.true(maxRel(got[k], want[k], scale) < tol, `${label} ${k}: ${maxRel(got[k], want[k], scale)}`);
        t.true(bitsEqual(got[k], again[k]), `${label} ${k}: a repeated run differs`);
      }
    }
    // concurrent calls on one set (their payloads' memory is leased per call and reused
    // afterwards): each gets its own result, the same bits as when it runs alone
    const batches = [4096, 24, 3000, 7];
    const xs = batches.map((b, i) => randn(b * d, { seed: 40 + i }).map((v, j) => Y[j % (N * d)] + 0.5 * v));
    const o = { sigma: 0.6, outputs: ['mean', 'traceCov'] as EstimateOutput[] };
    const alone: Array<Record<string, Float32Array>> = [];
    for (const xi of xs) alone.push((await set.estimateAsync(xi, o)) as Record<string, Float32Array>);
    for (let round = 0; round < 3; round++) {
      const together = (await Promise.all(xs.map((xi) => set.estimateAsync(xi, o)))) as Array<Record<string, Float32Array>>;
      together.forEach((r, i) => {
        t.true(bitsEqual(r.mean, alone[i].mean) && bitsEqual(r.traceCov, alone[i].traceCov), `concurrent call ${i} (B = ${batches[i]}) differs from the same call alone`);
      });
    }
    t.true(maxRel(alone[1].mean, (ref.estimate(xs[1], o) as Record<string, Float32Array>).mean) < 1e-5);
    // the sampler: the same seed gives the same samples as the in-process set
    const sigmas = schedules.karrasSigmas(8);
    for (const [solver, churn] of [['heun', undefined], ['euler', { sChurn: 20 }]] as const) {
      const a = await set.sample({ sigmas, batch: 12, seed: 5, solver, churn });
      const b = await ref.sample({ sigmas, batch: 12, seed: 5, solver, churn });
      t.is(a.nfe, b.nfe);
      t.true(maxRel(a.x, b.x) < 1e-4, `${solver}: ${maxRel(a.x, b.x)}`);
    }
  } finally {
    await set.close();
    await stopAll(ws);
  }
});

test.serial('shards that do not tile the set exactly once, or differ in content, are refused', async (t) => {
  const gap = [worker('gap', file, [0, 1000]), worker('gap', file, [1500, 3000])];
  const overlap = [worker('ovl', file, [0, 1500]), worker('ovl', file, [1000, 3000])];
  const mixed = [worker('mix', file, [0, 1500]), worker('mix', other, [0, 1500]), worker('mix', file, [1500, 3000])];
  const good = [worker('good', file, [0, 3000])];
  await Promise.all([...gap, ...overlap, ...mixed, ...good].map((w) => w.ready));
  try {
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'gap' }), { code: 'ERR_SCOREFIELD_SHARDS', message: /rows 1000:1500 are missing/ });
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'ovl' }), { code: 'ERR_SCOREFIELD_SHARDS', message: /rows 1000:1500 are served twice/ });
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'mix' }), { code: 'ERR_SCOREFIELD_SHARDS', message: /one content for rows 0:1500/ });
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'nobody' }), { code: 'ERR_SCOREFIELD_SHARDS', message: /none/ });
    // the content hash: the set connects, and refuses once its expected hash is another set's
    const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'good' });
    const h = set.hash;
    await set.close();
    const again = await ShardedReferenceSet.connect({ connection: redis.url, name: 'good', expectHash: h });
    await again.close();
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'good', expectHash: 'f'.repeat(64) }), { code: 'ERR_SCOREFIELD_SHARDS', message: /other data/ });
    // a stopped worker deregisters: its set is gone
    await stopAll(good);
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'good' }), { code: 'ERR_SCOREFIELD_SHARDS' });
  } finally {
    await stopAll([...gap, ...overlap, ...mixed, ...good]);
  }
});

test.serial('a worker SIGKILLed mid-sample: the run completes on a replica and on a restarted worker, bit-identical', async (t) => {
  const fast = ['--lock-ms', '1000', '--stalled-ms', '300'];
  const a1 = worker('kill', file, [0, 1500], fast);
  const a2 = worker('kill', file, [0, 1500], fast);
  const b1 = worker('kill', file, [1500, 3000], fast);
  await Promise.all([a1, a2, b1].map((w) => w.ready));
  const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'kill', jobTimeout: 60000 });
  let b2: WorkerProc | undefined;
  try {
    const opts = { sigmas: schedules.karrasSigmas(12), batch: 400, seed: 9 };
    const want = await set.sample(opts);
    let killed = false;
    const got = await set.sample({
      ...opts,
      onProgress: (step) => {
        if (step === 3 && !killed) {
          killed = true;
          a1.proc.kill('SIGKILL'); // its replica a2 serves rows 0:1500
          b1.proc.kill('SIGKILL'); // nobody serves 1500:3000 until b2 starts
          b2 = worker('kill', file, [1500, 3000], fast);
        }
      },
    });
    t.true(killed);
    t.is(await a1.exited, 'SIGKILL');
    t.true(bitsEqual(got.x, want.x), 'the samples differ from the run without faults');
    t.is(got.nfe, want.nfe);
  } finally {
    await set.close();
    await stopAll([a1, a2, b1, ...(b2 ? [b2] : [])]);
  }
});

test.serial('a job that ran twice (its first attempt failed after writing) is merged once', async (t) => {
  const flaky = startScript([path.join(__dirname, 'fixtures/flaky-worker.ts'), redis.url, 'retry', file, '0', '1200']);
  procs.push(flaky);
  const b = worker('retry', file, [1200, 3000]);
  await Promise.all([flaky.ready, b.ready]);
  const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'retry' });
  try {
    const x = randn(10 * d, { seed: 4 }).map((v, i) => Y[i + 5 * d] + v);
    const want = ref.estimate(x, { sigma: 0.5, outputs: ['mean', 'logDensity'] });
    const got = await set.estimateAsync(x, { sigma: 0.5, outputs: ['mean', 'logDensity'] });
    t.true(maxRel(got.mean, want.mean) < 1e-5);
    t.true(maxRel(got.logDensity, want.logDensity) < 1e-5);
    // a shard counted twice would double its weight: log-density off by up to log 2
    const q = new Queue(queueName('retry', set.shards[0]), { connection: { port: redis.port, host: '127.0.0.1' }, prefix: PREFIX });
    const done = await q.getJobs(['completed']);
    await q.close();
    t.true(done.some((j) => j.attemptsMade >= 1), 'no job of the flaky shard was retried');
  } finally {
    await set.close();
    await stopAll([flaky, b]);
  }
});

test.serial('abort cancels a distributed sample promptly and its outstanding jobs', async (t) => {
  const w = worker('abort', file, [0, 3000]);
  await w.ready;
  const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'abort' });
  try {
    const ac = new AbortController();
    let at = 0;
    const t0 = Date.now();
    const p = set.sample({ sigmas: schedules.karrasSigmas(40), batch: 2000, seed: 1, signal: ac.signal, onProgress: (s) => s === 2 && ((at = Date.now()), ac.abort(new Error('stop'))) });
    await t.throwsAsync(p, { code: 'ERR_SCOREFIELD_ABORTED' });
    t.true(Date.now() - at < 1000, `aborted after ${Date.now() - at} ms`);
    t.true(at > t0);
    const q = new Queue(queueName('abort', set.shards[0]), { connection: { port: redis.port, host: '127.0.0.1' }, prefix: PREFIX });
    const counts = await q.getJobCounts('waiting', 'delayed', 'prioritized');
    await q.close();
    t.is(counts.waiting + counts.delayed + counts.prioritized, 0);
    // the set still works after an abort
    const r = await set.estimateAsync(Y.subarray(0, 2 * d), { sigma: 1 });
    t.is(r.mean.length, 2 * d);
    const pre = new AbortController();
    pre.abort();
    await t.throwsAsync(set.estimateAsync(Y.subarray(0, d), { sigma: 1 }, pre.signal), { code: 'ERR_SCOREFIELD_ABORTED' });
  } finally {
    await set.close();
    await stopAll([w]);
  }
});

test.serial('malformed or oversized jobs fail with a coded reason and the worker stays up', async (t) => {
  const w = worker('bad', file, [0, 3000], ['--threads', '1']);
  const info = await w.ready;
  const qn = queueName('bad', info);
  const connection = { port: redis.port, host: '127.0.0.1' };
  const q = new Queue(qn, { connection, prefix: PREFIX });
  const ev = new QueueEvents(qn, { connection, prefix: PREFIX });
  await ev.waitUntilReady();
  const k = keys('bad');
  const base = { v: 1, set: 'bad', shard: { begin: info.begin, end: info.end, dim: info.dim, hash: info.hash }, query: `${k.base}:q:t:0`, result: `${k.base}:r:t:0:x`, batch: 2, dim: d, sigma: 1, alpha: 1, kernel: { kind: 'gaussian' }, weighted: true, ttl: 60000 };
  const good = Buffer.alloc(32 + 4 * 2 * d);
  good.writeUInt32LE(0x31514653, 0);
  good.writeUInt32LE(2, 4);
  good.writeUInt32LE(d, 8);
  const admin = new (await import('ioredis')).Redis(connection);
  await admin.set(base.query, good);
  await admin.set(`${k.base}:q:t:trunc`, good.subarray(0, 40));
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['version', { ...base, v: 99 }, /protocol version/],
    ['other set', { ...base, set: 'other' }, /for set other/],
    ['dim', { ...base, dim: d + 1 }, /dim/],
    ['key outside the set', { ...base, query: 'some:other:key' }, /not keys of this set/],
    ['content hash', { ...base, shard: { ...base.shard, hash: '0'.repeat(64) } }, /hash/],
    ['kernel as code', { ...base, kernel: { kind: 'eval', code: 'process.exit(3)' } }, /unknown kernel/],
    ['sigma', { ...base, sigma: -1 }, /sigma/],
    ['oversized batch', { ...base, batch: 2 ** 30 }, /limit/],
    ['missing payload', { ...base, query: `${k.base}:q:t:none` }, /no query payload/],
    ['truncated payload', { ...base, query: `${k.base}:q:t:trunc` }, /bytes where/],
    ['not an object', 'a string' as unknown as Record<string, unknown>, /not an object/],
  ];
  try {
    for (const [label, data, why] of bad) {
      const job = await q.add('estimatePartial', data as never, { attempts: 3 });
      const err = await t.throwsAsync(job.waitUntilFinished(ev, 20000));
      t.regex(err!.message, /^ERR_SCOREFIELD_REMOTE/, label);
      t.regex(err!.message, why, label);
      const after = await q.getJob(job.id!);
      t.is(after?.attemptsMade, 1, `${label}: retried although final`);
    }
    t.is(w.proc.exitCode, null, 'the worker exited');
    const ok = await q.add('estimatePartial', base as never);
    const r = (await ok.waitUntilFinished(ev, 20000)) as { bytes: number };
    t.true(r.bytes > 0);
    // and through the coordinator
    const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'bad' });
    const out = await set.estimateAsync(Y.subarray(0, 3 * d), { sigma: 0.3 });
    t.true(maxRel(out.mean, ref.estimate(Y.subarray(0, 3 * d), { sigma: 0.3 }).mean) < 1e-5);
    await set.close();
  } finally {
    admin.disconnect();
    await ev.close();
    await q.close();
    await stopAll([w]);
  }
});

test.serial('Redis unreachable or stopped mid-call: ERR_SCOREFIELD_REMOTE after the timeout, never a hang; passwords pass through', async (t) => {
  // nothing listening
  const closed = (await import('./helpers/redis')).freePort;
  const port = await closed();
  const t0 = Date.now();
  await t.throwsAsync(ShardedReferenceSet.connect({ connection: `redis://127.0.0.1:${port}`, name: 'x', timeout: 800 }), { code: 'ERR_SCOREFIELD_REMOTE', message: /reachable Redis/ });
  t.true(Date.now() - t0 < 5000);
  await t.throwsAsync(ShardedReferenceSet.connect({ connection: 'http://127.0.0.1:1', name: 'x' }), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(ShardedReferenceSet.connect({ connection: redis.url, name: 'bad name!' }), { code: 'ERR_SCOREFIELD_TYPE' });
  // a server of its own, with a password, stopped in the middle of a sample
  const own = await startRedis(undefined, ['--requirepass', 's3cret']);
  const url = `redis://:s3cret@127.0.0.1:${own.port}`;
  const w = startWorker(url, 'lost', file, [0, 3000], ['--threads', '1']);
  procs.push(w);
  try {
    await w.ready;
    await t.throwsAsync(ShardedReferenceSet.connect({ connection: own.url, name: 'lost', timeout: 2000 }), { code: 'ERR_SCOREFIELD_REMOTE' });
    const set = await ShardedReferenceSet.connect({ connection: url, name: 'lost', timeout: 1500 });
    let stoppedAt = 0;
    const p = set.sample({
      sigmas: schedules.karrasSigmas(30),
      batch: 500,
      seed: 2,
      onProgress: (s) => {
        if (s === 2) {
          stoppedAt = Date.now();
          own.proc.kill('SIGKILL');
        }
      },
    });
    const err = await t.throwsAsync(p, { code: 'ERR_SCOREFIELD_REMOTE' });
    t.true(Date.now() - stoppedAt < 10000, `failed ${Date.now() - stoppedAt} ms after Redis stopped`);
    t.truthy(err?.cause, 'no cause');
    const c0 = Date.now();
    await set.close();
    t.true(Date.now() - c0 < 5000, 'close hung on a lost Redis');
  } finally {
    await stopAll([w]);
    await own.stop();
  }
});

test.serial('the command: scorefield worker and scorefield sample --redis', async (t) => {
  const ws = [worker('cli', file, [0, 1700]), worker('cli', file, [1700, 3000])];
  await Promise.all(ws.map((w) => w.ready));
  const out = mkdtempSync(path.join(tmpdir(), 'sf-dist-cli-'));
  const { spawnSync } = await import('node:child_process');
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'lib/cli/main.ts'), 'sample', '--redis', redis.url, '--name', 'cli', '--steps', '6', '--batch', '8', '--seed', '3', '--out', out, '--json'], { encoding: 'utf8', timeout: 120000 });
    t.is(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { dataset: { n: number; dim: number }; nfe: number; nearest: unknown };
    t.deepEqual([s.dataset.n, s.dataset.dim, s.nfe, s.nearest], [N, d, 11, null]);
    const got = npy.read(path.join(out, 'samples.npy'));
    t.is(got.rows, 8);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'lib/cli/main.ts'), 'sample', '--redis', redis.url, '--out', out], { encoding: 'utf8', timeout: 60000 });
    t.not(bad.status, 0);
    t.regex(bad.stderr, /--name/);
    writeFileSync(path.join(out, 'x'), '');
  } finally {
    await stopAll(ws);
  }
});
