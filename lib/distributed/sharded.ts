/**
 * ShardedReferenceSet: the estimator and the sampler over a reference set whose shards live on
 * ShardWorkers (worker.ts), reached through BullMQ queues on Redis. One evaluation is one
 * scatter/gather: the queries are written once as a binary payload, one job per shard is added
 * to the shard's queue, and the partial states the workers write back are merged in the order
 * of the shards' rows (so repeated runs are bit-identical whatever the timing) and finished
 * exactly as the in-process ReferenceSet finishes its own (docs/math.md: partial states merge
 * exactly). Each shard contributes once per evaluation: its result is read from one key per
 * (evaluation, shard), so a job that ran twice after a retry is still merged once.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { ScorefieldAbortError, ScorefieldDenoiserError, ScorefieldError, ScorefieldRemoteError, ScorefieldUnsupportedError } from '../errors';
import { estimatePlan, needsWeighted, ReferenceSet, type EstimateOptions, type EstimateOutput, type EstimateResult, type PartialState } from '../estimator';
import * as is from '../is';
import { sampleRun, type SampleOptions } from '../sampling';
import { sampleEuler, sampleHeun } from '../samplers';
import {
  checkName,
  describeConnection,
  keys,
  PREFIX,
  queueName,
  redisOptions,
  remoteError,
  shardKey,
  VERSION,
  wireKernel,
  withTimeout,
  type Connection,
  type JobData,
  type ShardInfo,
  type WorkerRecord,
} from './common';
import { decodeState, encodeQuery, ScratchPool, type Scratch } from './wire';

export interface ConnectOptions {
  connection: Connection;
  /** The set's name, as its workers were started with. */
  name: string;
  /**
   * How long Redis may stay unreachable, at connection or during a call, before the call fails
   * with ERR_SCOREFIELD_REMOTE (ms, default 10000).
   */
  timeout?: number;
  /** How long one shard's job may take before the call fails with ERR_SCOREFIELD_REMOTE (ms, default 300000). */
  jobTimeout?: number;
  /** Keep looking for workers this long until the shards tile the set (ms, default 0: look once). */
  wait?: number;
  /** The set's content hash (`ShardedReferenceSet.hash` of an earlier run): a set whose shards differ is refused. */
  expectHash?: string;
  /** Attempts per job on transient worker failures (default 3). */
  attempts?: number;
}

/**
 * The options of ReferenceSet.sample; `signal` also aborts an evaluation in flight and cancels
 * its outstanding jobs.
 */
export type ShardedSampleOptions = SampleOptions;

export interface ShardedSampleResult {
  x: Float32Array;
  /** Denoiser evaluations (each one scatter/gather). */
  nfe: number;
  seconds: number;
  /** Seconds spent waiting for the shards' partial states (the rest is the coordinator's). */
  remoteSeconds: number;
}

interface Shard {
  info: ShardInfo;
  queue: Queue<JobData>;
  events: QueueEvents;
}

/** The shards of live workers: checked to tile [0, N) exactly once, with one dim and one content per range. */
function tile(set: string, records: WorkerRecord[]): ShardInfo[] {
  const byRange = new Map<string, { info: ShardInfo; by: string }>();
  for (const r of records) {
    for (const s of r.shards) {
      const key = `${s.begin}:${s.end}`;
      const seen = byRange.get(key);
      if (seen && seen.info.hash !== s.hash) {
        throw new ScorefieldRemoteError(
          `Expected one content for rows ${key} of set ${set} but received two: content hash ${seen.info.hash.slice(0, 16)} (worker ${seen.by}) and ${s.hash.slice(0, 16)} (worker ${r.id} on ${r.host})`,
          'ERR_SCOREFIELD_SHARDS',
        );
      }
      if (!seen) byRange.set(key, { info: s, by: `${r.id} on ${r.host}` });
    }
  }
  const shards = [...byRange.values()].map((v) => v.info).sort((a, b) => a.begin - b.begin || a.end - b.end);
  if (shards.length === 0) throw new ScorefieldRemoteError(`Expected workers serving set ${set} but received none`, 'ERR_SCOREFIELD_SHARDS');
  let at = 0;
  for (const s of shards) {
    if (s.dim !== shards[0].dim) {
      throw new ScorefieldRemoteError(`Expected one dim for the shards of set ${set} but received ${shards[0].dim} (rows ${shards[0].begin}:${shards[0].end}) and ${s.dim} (rows ${s.begin}:${s.end})`, 'ERR_SCOREFIELD_SHARDS');
    }
    if (s.begin > at) throw new ScorefieldRemoteError(`Expected shards tiling the rows of set ${set} but rows ${at}:${s.begin} are missing (a gap)`, 'ERR_SCOREFIELD_SHARDS');
    if (s.begin < at) throw new ScorefieldRemoteError(`Expected shards tiling the rows of set ${set} exactly once but rows ${s.begin}:${Math.min(at, s.end)} are served twice (an overlap of ${s.begin}:${s.end} with an earlier shard)`, 'ERR_SCOREFIELD_SHARDS');
    at = s.end;
  }
  return shards;
}

/** The content hash of a whole set: its shards' ranges and hashes in row order. */
function setHash(shards: ShardInfo[]): string {
  const h = createHash('sha256');
  for (const s of shards) h.update(`${s.begin}:${s.end}:${s.dim}:${s.hash};`);
  return h.digest('hex');
}

export class ShardedReferenceSet {
  /** Number of reference points N (the union of the shards). */
  readonly size: number;
  readonly dim: number;
  /** The shards, in row order. */
  readonly shards: readonly ShardInfo[];
  /** Content hash of the set (pass it as `expectHash` to refuse any other content later). */
  readonly hash: string;
  private readonly run = randomUUID();
  private evals = 0;
  /** Payload memory kept between evaluations (fresh memory costs page faults). */
  private readonly scratch = new ScratchPool();
  private closed = false;
  private lastError: Error | null = null;

  private constructor(
    private readonly name: string,
    private readonly conn: RedisOptions,
    private readonly redis: Redis,
    private readonly parts: Shard[],
    private readonly timeout: number,
    private readonly jobTimeout: number,
    private readonly attempts: number,
  ) {
    this.shards = parts.map((p) => ({ ...p.info }));
    this.size = parts[parts.length - 1].info.end;
    this.dim = parts[0].info.dim;
    this.hash = setHash(parts.map((p) => p.info));
    redis.on('error', (err) => {
      this.lastError = err;
    });
  }

  /** Discovers the shards of set `name` and checks that they tile it; `close()` releases the connections. */
  static async connect(options: ConnectOptions): Promise<ShardedReferenceSet> {
    const o = is.options<ConnectOptions>(options, 'options');
    const conn = redisOptions(o.connection as Connection);
    const name = checkName(o.name);
    const timeout = o.timeout === undefined ? 10000 : is.integer(o.timeout, 'options.timeout', 1);
    const jobTimeout = o.jobTimeout === undefined ? 300000 : is.integer(o.jobTimeout, 'options.jobTimeout', 1);
    const wait = o.wait === undefined ? 0 : is.integer(o.wait, 'options.wait', 0);
    const attempts = o.attempts === undefined ? 3 : is.integer(o.attempts, 'options.attempts', 1, 100);
    if (o.expectHash !== undefined && (typeof o.expectHash !== 'string' || !/^[0-9a-f]{64}$/.test(o.expectHash))) {
      throw is.typeError('a 64-digit hex content hash', 'options.expectHash', o.expectHash);
    }
    const where = describeConnection(conn);
    // commands fail at once while disconnected (no offline queue): a lost Redis is reported, never waited on forever
    const redis = new Redis({ ...conn, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: timeout });
    let last: Error | null = null;
    redis.on('error', (err) => {
      last = err;
    });
    const unreachable = (cause?: unknown) =>
      // the connection's own error (ECONNREFUSED, NOAUTH, ...) says more than "Connection is closed."
      remoteError(`Expected a reachable Redis at ${where} within ${timeout} ms but received ${String((last as Error | null)?.message ?? (cause as Error | undefined)?.message ?? 'no answer')}`, last ?? cause ?? undefined);
    try {
      await withTimeout(redis.connect(), timeout, () => unreachable());
    } catch (err) {
      redis.disconnect();
      throw err instanceof ScorefieldRemoteError ? err : unreachable(err);
    }
    const k = keys(name);
    let shards: ShardInfo[];
    const deadline = Date.now() + wait;
    try {
      for (;;) {
        try {
          shards = tile(name, await ShardedReferenceSet.discover(redis, k));
          break;
        } catch (err) {
          if (!(err instanceof ScorefieldRemoteError && err.code === 'ERR_SCOREFIELD_SHARDS') || Date.now() >= deadline) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      if (o.expectHash !== undefined && setHash(shards) !== o.expectHash) {
        throw new ScorefieldRemoteError(`Expected set ${name} with content hash ${o.expectHash} but its shards hash to ${setHash(shards)} (other data)`, 'ERR_SCOREFIELD_SHARDS');
      }
    } catch (err) {
      redis.disconnect();
      if (err instanceof ScorefieldRemoteError) throw err;
      throw unreachable(err);
    }
    const parts: Shard[] = [];
    for (const info of shards) {
      const qn = queueName(name, info);
      const queue = new Queue<JobData>(qn, { connection: redis, prefix: PREFIX });
      queue.on('error', () => undefined);  // reported through the calls (redis' own error event)
      const events = new QueueEvents(qn, { connection: { ...conn, maxRetriesPerRequest: null, connectTimeout: timeout }, prefix: PREFIX });
      events.on('error', () => undefined);
      parts.push({ info, queue, events });
    }
    const set = new ShardedReferenceSet(name, conn, redis, parts, timeout, jobTimeout, attempts);
    try {
      await withTimeout(Promise.all(parts.map((p) => p.events.waitUntilReady())), timeout, () => unreachable());
    } catch (err) {
      await set.close();
      throw err instanceof ScorefieldRemoteError ? err : unreachable(err);
    }
    return set;
  }

  private static async discover(redis: Redis, k: ReturnType<typeof keys>): Promise<WorkerRecord[]> {
    const ids = await redis.smembers(k.workers);
    if (ids.length === 0) return [];
    const raw = await redis.mget(ids.map((id) => k.worker(id)));
    const out: WorkerRecord[] = [];
    const dead: string[] = [];
    raw.forEach((r, i) => {
      if (r === null) {
        dead.push(ids[i]);
        return;
      }
      try {
        const rec = JSON.parse(r) as WorkerRecord;
        if (rec.v === VERSION && Array.isArray(rec.shards)) out.push(rec);
      } catch {
        // a record that is not ours: ignored
      }
    });
    if (dead.length) await redis.srem(k.workers, ...dead);
    return out;
  }

  /** Same options and outputs as ReferenceSet.estimate, computed by the workers (async only). */
  async estimateAsync<O extends EstimateOutput = 'mean' | 'score'>(x: Float32Array, options: EstimateOptions<O>, signal?: AbortSignal): Promise<EstimateResult<O>> {
    this.checkOpen();
    const { q, outputs } = estimatePlan(x, this.dim, options);
    // the payloads' memory is reused by later calls, but only after a call that succeeded
    const lease = [this.scratch.take(), ...this.parts.map(() => this.scratch.take())];
    const state = await this.evaluate(q.x, q.B, q.sigma, q.alpha, q.kernel, needsWeighted(outputs), lease, signal);
    const result = ReferenceSet.finalizePartial<O>(state, q.x, options);
    this.scratch.give(...lease);
    return result;
  }

  /** The same as {@link estimateAsync} (every call is remote, so every call is async). */
  estimate<O extends EstimateOutput = 'mean' | 'score'>(x: Float32Array, options: EstimateOptions<O>, signal?: AbortSignal): Promise<EstimateResult<O>> {
    return this.estimateAsync(x, options, signal);
  }

  private checkOpen(): void {
    if (this.closed) throw remoteError(`Expected an open ShardedReferenceSet for set ${this.name} but it was closed`);
  }

  /** One scatter/gather: every shard's partial state, merged in row order. */
  private async evaluate(
    x: Float32Array,
    B: number,
    sigma: number | Float32Array,
    alpha: number | Float32Array,
    kernel: import('../native').KernelArg,
    weighted: boolean,
    lease: Scratch[],
    signal?: AbortSignal,
  ): Promise<PartialState> {
    if (signal?.aborted) throw new ScorefieldAbortError('The distributed call was aborted', { cause: signal.reason });
    const k = keys(this.name);
    const ev = this.evals++;
    const qkey = k.query(this.run, ev);
    const ttl = this.jobTimeout + 60000;
    const payload = encodeQuery({
      x,
      batch: B,
      dim: this.dim,
      sigma: typeof sigma === 'number' ? null : sigma,
      alpha: typeof alpha === 'number' ? null : alpha,
    }, lease[0]);
    const jobId = `${this.run}-${ev}`;
    const jobs: Array<Job<JobData> | null> = this.parts.map(() => null);
    const rkeys = this.parts.map((p) => k.result(this.run, ev, shardKey(p.info)));
    let cancelled = false;
    const cancel = () => {
      if (cancelled) return;
      cancelled = true;
      // jobs not started are removed; a running one finds no payload or finishes into a key that expires
      this.redis.del(qkey, ...rkeys).catch(() => undefined);
      for (const j of jobs) j?.remove().catch(() => undefined);
    };
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new ScorefieldAbortError('The distributed call was aborted', { cause: signal!.reason }));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    // Redis lost during the call: fail once it has stayed away for `timeout` ms
    let lostTimer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    let onReady: (() => void) | undefined;
    const lost = new Promise<never>((_, reject) => {
      onClose = () => {
        if (lostTimer) return;
        lostTimer = setTimeout(() => {
          reject(remoteError(`Expected Redis at ${describeConnection(this.conn)} back within ${this.timeout} ms but it stayed unreachable (${this.lastError?.message ?? 'connection closed'})`, this.lastError ?? undefined));
        }, this.timeout);
        lostTimer.unref();
      };
      onReady = () => {
        clearTimeout(lostTimer);
        lostTimer = undefined;
      };
      this.redis.on('close', onClose);
      this.redis.on('ready', onReady);
      if (this.redis.status !== 'ready') onClose();
    });
    lost.catch(() => undefined);
    const work = (async () => {
      try {
        await this.redis.set(qkey, payload, 'PX', ttl);
        const data = (p: Shard, i: number): JobData => ({
          v: VERSION,
          set: this.name,
          shard: p.info,
          query: qkey,
          result: rkeys[i],
          batch: B,
          dim: this.dim,
          sigma: typeof sigma === 'number' ? sigma : null,
          alpha: typeof alpha === 'number' ? alpha : null,
          kernel: wireKernel(kernel),
          weighted,
          ttl,
        });
        await Promise.all(
          this.parts.map(async (p, i) => {
            jobs[i] = await p.queue.add('estimatePartial', data(p, i), {
              jobId,
              attempts: this.attempts,
              backoff: { type: 'fixed', delay: 50 },
              removeOnComplete: { age: 600 },
              removeOnFail: { age: 3600 },
            });
          }),
        );
      } catch (err) {
        throw remoteError(`Expected Redis at ${describeConnection(this.conn)} to accept the jobs of an evaluation but received ${(err as Error).message}`, err);
      }
      await Promise.all(
        this.parts.map((p, i) =>
          withTimeout(jobs[i]!.waitUntilFinished(p.events), this.jobTimeout, () =>
            remoteError(`Expected a worker to finish rows ${p.info.begin}:${p.info.end} of set ${this.name} within ${this.jobTimeout} ms but none did (no live worker for that shard?)`),
          ).catch((err: unknown) => {
            if (err instanceof ScorefieldRemoteError) throw err;
            const msg = (err as Error).message ?? String(err);
            throw remoteError(`Expected rows ${p.info.begin}:${p.info.end} of set ${this.name} to be computed but the worker failed: ${msg.replace(/^ERR_SCOREFIELD_REMOTE: /, '')}`, err);
          }),
        ),
      );
      let bufs: Array<Buffer | null>;
      try {
        bufs = await Promise.all(rkeys.map((r) => this.redis.getBuffer(r)));
      } catch (err) {
        throw remoteError(`Expected Redis at ${describeConnection(this.conn)} to return the partial states but received ${(err as Error).message}`, err);
      }
      // merged in the shards' row order: the same bits whatever order the jobs finished in
      const states = bufs.map((b, i) => {
        const p = this.parts[i].info;
        if (!b) throw remoteError(`Expected the partial state of rows ${p.begin}:${p.end} under ${rkeys[i]} but it is missing (expired?)`);
        return decodeState(b, B, this.dim, weighted, p.end - p.begin, lease[i + 1]);
      });
      this.redis.del(qkey, ...rkeys).catch(() => undefined);
      return states.length === 1 ? states[0] : ReferenceSet.mergePartials(states);
    })();
    try {
      return await Promise.race([work, aborted, lost]);
    } catch (err) {
      cancel();
      work.catch(() => undefined);
      throw err;
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      clearTimeout(lostTimer);
      if (onClose) this.redis.off('close', onClose);
      if (onReady) this.redis.off('ready', onReady);
    }
  }

  /**
   * Samples with the probability-flow ODE, the denoiser being the set's posterior mean, every
   * evaluation one scatter/gather; the ODE loop runs here. The same options and seed as
   * ReferenceSet.sample give the same samples (to float rounding).
   */
  async sample(options: ShardedSampleOptions): Promise<ShardedSampleResult> {
    this.checkOpen();
    const { o, sigmas, solver, seed, seeds, offset, x: x0, churn } = sampleRun(options, this.dim);
    if (offset !== 0 && churn.sChurn > 0) throw new ScorefieldUnsupportedError('Expected no options.offset with churn for a sharded sample (use per-sample seeds) but received both');
    const kernel = o.kernel;
    let nfe = 0;
    let remote = 0;
    const t0 = performance.now();
    const denoiser = async (x: Float32Array, sigma: number) => {
      const t = performance.now();
      const r = await this.estimateAsync(x, { sigma, kernel, outputs: ['mean'] }, o.signal);
      remote += performance.now() - t;
      nfe++;
      return r.mean;
    };
    const total = sigmas.length - 1;
    const sampler = solver === 'heun' ? sampleHeun : sampleEuler;
    let x: Float32Array;
    try {
      x = await sampler(denoiser, x0, sigmas, {
        dim: this.dim,
        seed,
        seeds: seeds ?? undefined,
        churn,
        signal: o.signal,
        onStep: (step) => o.onProgress?.(step + 1, total),
      });
    } catch (err) {
      // the sampler wraps what a denoiser throws; a remote failure is reported as itself
      if (err instanceof ScorefieldDenoiserError && err.cause instanceof ScorefieldError) throw err.cause;
      throw err;
    }
    return { x, nfe, seconds: (performance.now() - t0) / 1000, remoteSeconds: remote / 1000 };
  }

  /** Releases the connections (the workers keep running). Idempotent; never waits on a lost Redis longer than the timeout. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = this.parts.flatMap((p) => [p.events.close(), p.queue.close()]);
    const done = await withTimeout(Promise.allSettled(all), Math.min(this.timeout, 5000), () => new Error('close timed out')).then(
      () => true,
      () => false,
    );
    if (!done) for (const p of this.parts) void Promise.allSettled([p.events.disconnect(), p.queue.disconnect()]);
    this.redis.disconnect();
  }
}
