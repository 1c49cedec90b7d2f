// The distributed estimator against the in-process one on the same machine:
//
//   npm run bench:distributed [-- --reps R]
//
// Starts its own redis-server on a free loopback port and two `scorefield worker` processes,
// each serving half of the 10,000 real MNIST digits (d = 784), then times, in alternation call
// by call: estimate of B = 256 noised digits (sharded vs in-process ReferenceSet over the same
// rows), the latency of one scatter/gather with B = 1, and the full Heun sample (18 steps,
// 35 evaluations, batch 64) sharded vs in-process. Prints JSON lines. The workers and this
// coordinator share the machine's cores, so the sharded figures include the contention of
// three processes on them.
//
// First it times the transport's parts alone, on the same Redis: a raw loopback TCP transfer
// of 1.6 MB (a socket of this process to itself, no Redis), ioredis SET / GET (getBuffer) of
// the payload sizes one evaluation moves (0.8 MB of queries, 1.6 MB of float64 state), and the
// round trip of a no-op BullMQ job (add, process, completion event through QueueEvents), and
// the cost of first-touch memory: copying 1.6 MB into memory fresh from the kernel (a new
// 64 MB Buffer each time, as a reply parser's growing pool is) against copying it into memory
// already touched.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { datasets, npy, ReferenceSet, schedules, setThreads, capabilities } from '../lib/index';
import { ShardedReferenceSet } from '../lib/distributed/index';
import { noised } from '../test/helpers/estimator-ref';
import { startRedis, startWorker } from '../test/helpers/redis';
import { createServer, connect, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { emit, median, numFlag } from './util';

/** Median ms to send `bytes` over a loopback TCP socket and get a 1-byte acknowledgement. */
async function socketMs(bytes: number, reps: number): Promise<number> {
  const srv = createServer((s) => {
    let got = 0;
    s.on('data', (b: Buffer) => {
      got += b.length;
      if (got >= bytes) {
        got -= bytes;
        s.write('k');
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const c = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => c.once('connect', () => r()));
  const buf = Buffer.alloc(bytes, 7);
  const ts: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      c.once('data', () => r());
      c.write(buf);
    });
    if (i >= 3) ts.push(performance.now() - t0);
  }
  c.destroy();
  await new Promise<void>((r) => srv.close(() => r()));
  return median(ts);
}

/** Median ms to copy `bytes` into fresh memory (a new 64 MB Buffer) and into memory touched before. */
function freshCopy(bytes: number, reps: number): { freshCopyMs: number; warmCopyMs: number } {
  const src = Buffer.alloc(bytes, 1);
  const warm = Buffer.alloc(bytes);
  const fresh: number[] = [];
  const touched: number[] = [];
  for (let i = 0; i < reps; i++) {
    const pool = Buffer.allocUnsafe(64 << 20);
    let t0 = performance.now();
    src.copy(pool, 0);
    fresh.push(performance.now() - t0);
    t0 = performance.now();
    src.copy(warm, 0);
    touched.push(performance.now() - t0);
  }
  return { freshCopyMs: median(fresh), warmCopyMs: median(touched) };
}

/** The transport's parts alone: raw socket, ioredis SET / GET of one evaluation's payloads, a no-op BullMQ job. */
async function transport(url: string, reps: number) {
  const r = new Redis(url);
  for (const bytes of [800_000, 1_600_000]) {
    const buf = Buffer.alloc(bytes, 3);
    const set: number[] = [];
    const get: number[] = [];
    for (let i = 0; i < reps + 3; i++) {
      let t0 = performance.now();
      await r.set('sf-bench-transport', buf);
      const a = performance.now() - t0;
      t0 = performance.now();
      const b = await r.getBuffer('sf-bench-transport');
      const g = performance.now() - t0;
      if (!b || b.length !== bytes) throw new Error('the transport benchmark read back the wrong payload');
      if (i >= 3) {
        set.push(a);
        get.push(g);
      }
    }
    emit({ bench: 'distributed-transport', bytes, socketMs: await socketMs(bytes, reps), redisSetMs: median(set), redisGetMs: median(get) });
  }
  await r.del('sf-bench-transport');
  // connection options (not instances): BullMQ opens and closes its own connections
  const u = new URL(url);
  const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  const queue = new Queue('sf-bench-noop', { connection });
  const events = new QueueEvents('sf-bench-noop', { connection });
  const worker = new Worker('sf-bench-noop', async () => 1, { connection });
  await Promise.all([events.waitUntilReady(), worker.waitUntilReady()]);
  const ts: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    const t0 = performance.now();
    const job = await queue.add('noop', {}, { removeOnComplete: true });
    await job.waitUntilFinished(events);
    if (i >= 3) ts.push(performance.now() - t0);
  }
  emit({ bench: 'distributed-bullmq-noop', jobMs: median(ts) });
  emit({ bench: 'distributed-fresh-memory', bytes: 1_600_000, ...freshCopy(1_600_000, reps) });
  await worker.close();
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
  r.disconnect();
}


async function main() {
  const reps = numFlag('reps', 9);
  const m = datasets.mnist();
  const d = m.dim;
  const N = m.n;
  const dir = mkdtempSync(path.join(tmpdir(), 'sf-bench-dist-'));
  const file = path.join(dir, 'mnist.npy');
  npy.write(file, m.data, N, d);
  const redis = await startRedis();
  // the transport alone, before the workers start (their loading would compete with it)
  try {
    await transport(redis.url, Math.max(15, reps));
  } catch (err) {
    await redis.stop();
    throw err;
  }
  const half = Math.floor(N / 2);
  const workers = [startWorker(redis.url, 'bench', file, [0, half], ['--threads', '1']), startWorker(redis.url, 'bench', file, [half, N], ['--threads', '1'])];
  try {
    await Promise.all(workers.map((w) => w.ready));
    const set = await ShardedReferenceSet.connect({ connection: redis.url, name: 'bench' });
    const ref = await ReferenceSet.createAsync(m.data, d);
    emit({ bench: 'env', threads: capabilities().threads, simd: capabilities().simd, shards: set.shards.length, N, d });
    const cases: Array<{ what: string; B: number; sigma: number }> = [
      { what: 'estimate', B: 256, sigma: 0.01 },
      { what: 'estimate', B: 256, sigma: 1 },
      { what: 'estimate', B: 256, sigma: 20 },
      { what: 'estimate', B: 1, sigma: 1 },
    ];
    for (const c of cases) {
      const x = noised(m.data.subarray(0, c.B * d), c.sigma, 1);
      const o = { sigma: c.sigma, outputs: ['score'] as ['score'] };
      for (let w = 0; w < 5; w++) {  // warm: JIT, the workers' first pages, Redis' buffers
        await set.estimateAsync(x, o);
        await ref.estimateAsync(x, o);
      }
      const ts: number[] = [];
      const tl: number[] = [];
      for (let r = 0; r < reps; r++) {
        let t0 = performance.now();
        await set.estimateAsync(x, o);
        ts.push(performance.now() - t0);
        t0 = performance.now();
        await ref.estimateAsync(x, o);
        tl.push(performance.now() - t0);
      }
      const sharded = median(ts);
      const local = median(tl);
      emit({ bench: 'distributed-estimate', B: c.B, sigma: c.sigma, N, d, shards: 2, shardedMs: sharded, inProcessMs: local, overheadMs: sharded - local, overheadShare: (sharded - local) / local });
    }
    // the full Heun sample, 18 steps (35 evaluations), batch 64
    const sigmas = schedules.karrasSigmas(18);
    const ss: number[] = [];
    const sl: number[] = [];
    let same = true;
    for (let r = 0; r < Math.max(3, Math.ceil(reps / 3)); r++) {
      let t0 = performance.now();
      const a = await set.sample({ sigmas, batch: 64, seed: r });
      ss.push(performance.now() - t0);
      t0 = performance.now();
      const b = await ref.sample({ sigmas, batch: 64, seed: r });
      sl.push(performance.now() - t0);
      for (let i = 0; i < a.x.length; i++) if (Math.abs(a.x[i] - b.x[i]) > 1e-4 * (1 + Math.abs(b.x[i]))) same = false;
    }
    emit({ bench: 'distributed-sample', solver: 'heun', steps: 18, nfe: 35, batch: 64, N, d, shards: 2, shardedMs: median(ss), inProcessMs: median(sl), ratio: median(ss) / median(sl), sameSamples: same });
    await set.close();
  } finally {
    for (const w of workers) w.proc.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await redis.stop();
  }
}

setThreads(capabilities().threads);
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
