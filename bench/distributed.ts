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
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { datasets, npy, ReferenceSet, schedules, setThreads, capabilities } from '../lib/index';
import { ShardedReferenceSet } from '../lib/distributed/index';
import { noised } from '../test/helpers/estimator-ref';
import { startRedis, startWorker } from '../test/helpers/redis';
import { emit, median } from './util';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};

async function main() {
  const reps = arg('reps', 9);
  const m = datasets.mnist();
  const d = m.dim;
  const N = m.n;
  const dir = mkdtempSync(path.join(tmpdir(), 'sf-bench-dist-'));
  const file = path.join(dir, 'mnist.npy');
  npy.write(file, m.data, N, d);
  const redis = await startRedis();
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
