/**
 * ShardWorker: serves shards of a named reference set to ShardedReferenceSet coordinators over
 * BullMQ. Each shard has its own queue (replicas of a shard share it, for throughput and
 * failover); a job is one estimatePartial over the shard's rows, its queries read from and its
 * partial state written to Redis as binary payloads. The worker registers itself under a key
 * with a TTL that its heartbeat renews, so a worker that dies drops out of discovery by itself;
 * a job it held is moved back to the queue by BullMQ's stalled-job check and served by a
 * replica or by the worker restarted.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { ScorefieldError, ScorefieldRemoteError } from '../errors';
import { ReferenceSet } from '../estimator';
import { gaussian, poisson, radial, type Kernel } from '../kernels';
import * as is from '../is';
import * as npy from '../npy';
import {
  checkName,
  contentHash,
  describeConnection,
  keys,
  PREFIX,
  queueName,
  redisOptions,
  VERSION,
  withTimeout,
  type Connection,
  type JobData,
  type ShardInfo,
  type WorkerRecord,
} from './common';
import { decodeQuery, encodeState, queryBytes, ScratchPool } from './wire';

/** One shard a worker serves: rows of an .npy file, or rows handed in. */
export type ShardSource =
  | {
      /** A 2-d float32/float64 .npy file. */
      file: string;
      /** Rows [begin, end) of the file (default: all); they are rows [begin, end) of the set. */
      rows?: [number, number];
    }
  | {
      /** Rows of the set, row-major (rows x dim); copied. */
      data: Float32Array;
      dim: number;
      /** Index of the first row in the whole set (default 0). */
      begin?: number;
    };

export interface ShardWorkerOptions {
  connection: Connection;
  /** The set's name (letters, digits, _ . -). */
  name: string;
  shards: ShardSource[];
  /** Jobs of one shard processed at a time (default 1: the estimator already uses every core). */
  concurrency?: number;
  /** BullMQ lock of a running job (ms, default 30000): a job whose worker died is retried after it. */
  lockDuration?: number;
  /** How often the stalled-job check runs (ms, default 30000). */
  stalledInterval?: number;
  /** TTL of the registration (ms, default 15000); the heartbeat renews it every third of it. */
  heartbeat?: number;
  /** Largest query payload accepted (bytes, default 512 MiB); larger jobs fail, the worker stays up. */
  maxPayloadBytes?: number;
  /** Called after a job's partial state is written, before the job completes (metrics; a throw fails the attempt). */
  onJob?: (info: { shard: ShardInfo; batch: number; attempt: number; seconds: number }) => void | Promise<void>;
  /** Receives errors that do not fail a job (a lost Redis connection, a failed heartbeat). */
  onError?: (err: Error) => void;
}

interface Served {
  info: ShardInfo;
  ref: ReferenceSet;
  worker: Worker<JobData> | null;
}

function fail(message: string): never {
  // UnrecoverableError: BullMQ does not retry; the coordinator gets the coded message
  throw new UnrecoverableError(`ERR_SCOREFIELD_REMOTE: ${message}`);
}

function kernelOf(k: unknown): Kernel {
  if (is.isPlainObject(k)) {
    const o = k as { kind?: unknown; D?: unknown; family?: unknown };
    if (o.kind === 'gaussian') return gaussian();
    if (o.kind === 'poisson' && typeof o.D === 'number' && o.D > 0 && Number.isFinite(o.D)) return poisson({ D: o.D });
    if (o.kind === 'radial' && (o.family === 'tanh' || o.family === 'exp')) return radial(o.family);
  }
  return fail(`a job with an unknown kernel ${JSON.stringify(k)?.slice(0, 80)}`);
}

export class ShardWorker {
  readonly id = randomUUID();
  private readonly o: Required<Omit<ShardWorkerOptions, 'onJob' | 'onError' | 'connection'>> & Pick<ShardWorkerOptions, 'onJob' | 'onError'>;
  private readonly conn: RedisOptions;
  private readonly served: Served[] = [];
  private redis: Redis | null = null;
  private beat: NodeJS.Timeout | null = null;
  private closed = false;
  /** Payload memory kept between jobs (fresh memory costs page faults). */
  private readonly scratch = new ScratchPool();

  private constructor(options: ShardWorkerOptions) {
    const o = is.options<ShardWorkerOptions>(options, 'options');
    this.conn = redisOptions(o.connection as Connection);
    if (!Array.isArray(o.shards) || o.shards.length === 0) throw is.typeError('a non-empty array of shards', 'options.shards', o.shards);
    const int = (v: unknown, name: string, dflt: number, min: number) => (v === undefined ? dflt : is.integer(v, name, min));
    this.o = {
      name: checkName(o.name),
      shards: o.shards,
      concurrency: int(o.concurrency, 'options.concurrency', 1, 1),
      lockDuration: int(o.lockDuration, 'options.lockDuration', 30000, 100),
      stalledInterval: int(o.stalledInterval, 'options.stalledInterval', 30000, 100),
      heartbeat: int(o.heartbeat, 'options.heartbeat', 15000, 300),
      maxPayloadBytes: int(o.maxPayloadBytes, 'options.maxPayloadBytes', 512 * 2 ** 20, 64),
      onJob: o.onJob,
      onError: o.onError,
    };
  }

  /**
   * Loads the shards, registers them and starts serving. Resolves once the worker is
   * discoverable. Shards of one worker must not overlap.
   */
  static async start(options: ShardWorkerOptions): Promise<ShardWorker> {
    const w = new ShardWorker(options);
    try {
      await w.load();
      await w.serve();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  /** The shards served (rows, dim, content hash). */
  get shards(): ShardInfo[] {
    return this.served.map((s) => ({ ...s.info }));
  }

  private async load(): Promise<void> {
    for (const [i, src] of this.o.shards.entries()) {
      const name = `options.shards[${i}]`;
      if (!is.isPlainObject(src)) throw is.typeError('{ file, rows? } or { data, dim, begin? }', name, src);
      let rows: Float32Array;
      let dim: number;
      let begin: number;
      if ('file' in src) {
        const range = src.rows;
        if (range !== undefined && !(Array.isArray(range) && range.length === 2)) throw is.typeError('[begin, end]', `${name}.rows`, range);
        const m = npy.readRows(src.file, range?.[0] ?? 0, range?.[1]);
        rows = m.data;
        dim = m.cols;
        begin = range?.[0] ?? 0;
      } else {
        dim = is.integer(src.dim, `${name}.dim`, 1);
        rows = is.f32(src.data, `${name}.data`).slice();
        if (rows.length === 0 || rows.length % dim !== 0) throw is.typeError(`a non-empty length divisible by ${dim}`, `${name}.data`, rows);
        begin = src.begin === undefined ? 0 : is.integer(src.begin, `${name}.begin`, 0);
      }
      const info: ShardInfo = { begin, end: begin + rows.length / dim, dim, hash: contentHash(rows, dim) };
      for (const s of this.served) {
        if (info.begin < s.info.end && s.info.begin < info.end) {
          throw new ScorefieldRemoteError(`Expected shards of one worker not to overlap but rows ${info.begin}:${info.end} overlap ${s.info.begin}:${s.info.end}`, 'ERR_SCOREFIELD_SHARDS');
        }
      }
      const ref = await ReferenceSet.createAsync(rows, dim);
      this.served.push({ info, ref, worker: null });
    }
  }

  private record(): string {
    const r: WorkerRecord = { v: VERSION, id: this.id, host: hostname(), pid: process.pid, shards: this.shards };
    return JSON.stringify(r);
  }

  private async serve(): Promise<void> {
    const k = keys(this.o.name);
    this.redis = new Redis({ ...this.conn, lazyConnect: true, maxRetriesPerRequest: null });
    this.redis.on('error', (err) => this.o.onError?.(err));
    try {
      await this.redis.connect();
    } catch (err) {
      throw new ScorefieldRemoteError(`Expected a reachable Redis at ${describeConnection(this.conn)} but received ${(err as Error).message}`, 'ERR_SCOREFIELD_REMOTE', { cause: err });
    }
    for (const s of this.served) {
      const worker = new Worker<JobData>(queueName(this.o.name, s.info), (job) => this.process(s, job), {
        connection: { ...this.conn, maxRetriesPerRequest: null },
        prefix: PREFIX,
        concurrency: this.o.concurrency,
        lockDuration: this.o.lockDuration,
        stalledInterval: this.o.stalledInterval,
        maxStalledCount: 10,
      });
      worker.on('error', (err) => this.o.onError?.(err));
      s.worker = worker;
    }
    await Promise.all(this.served.map((s) => s.worker!.waitUntilReady()));
    const register = async () => {
      await this.redis!.multi().sadd(k.workers, this.id).set(k.worker(this.id), this.record(), 'PX', this.o.heartbeat).exec();
    };
    await register();
    this.beat = setInterval(() => {
      register().catch((err) => this.o.onError?.(err as Error));
    }, Math.max(100, Math.floor(this.o.heartbeat / 3)));
    this.beat.unref();
  }

  /** One job: validate it, read the queries, compute the partial state, write it. */
  private async process(s: Served, job: Job<JobData>): Promise<{ bytes: number; seconds: number }> {
    const t0 = performance.now();
    const d = job.data as unknown;
    if (!is.isPlainObject(d)) fail('a job whose data is not an object');
    const j = d as Partial<JobData>;
    const k = keys(this.o.name);
    if (j.v !== VERSION) fail(`a job of protocol version ${String(j.v)} where this worker speaks ${VERSION}`);
    if (j.set !== this.o.name) fail(`a job for set ${String(j.set)} on a worker of ${this.o.name}`);
    const sh = j.shard as ShardInfo | undefined;
    if (!sh || sh.begin !== s.info.begin || sh.end !== s.info.end || sh.hash !== s.info.hash) {
      fail(`a job for shard ${sh ? `${sh.begin}:${sh.end} with content hash ${String(sh.hash).slice(0, 16)}` : '(none)'} on a worker whose rows ${s.info.begin}:${s.info.end} hash to ${s.info.hash.slice(0, 16)}`);
    }
    const okInt = (v: unknown, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= max;
    if (!okInt(j.batch, 2 ** 31) || j.dim !== s.info.dim) fail(`a job of batch ${String(j.batch)} and dim ${String(j.dim)} for a shard of dim ${s.info.dim}`);
    if (typeof j.query !== 'string' || !j.query.startsWith(`${k.base}:q:`) || typeof j.result !== 'string' || !j.result.startsWith(`${k.base}:r:`)) {
      fail('a job whose payload keys are not keys of this set');
    }
    if (!okInt(j.ttl, 7 * 24 * 3600 * 1000)) fail(`a job with a result TTL of ${String(j.ttl)}`);
    const coef = (v: unknown, name: string, positive: boolean) => {
      if (v === null) return null;
      if (typeof v !== 'number' || !Number.isFinite(v) || (positive && !(v > 0))) fail(`a job with ${name} ${String(v)}`);
      return v;
    };
    const sigma = coef(j.sigma, 'sigma', true);
    const alpha = coef(j.alpha, 'alpha', false);
    const kernel = kernelOf(j.kernel);
    if (typeof j.weighted !== 'boolean') fail('a job without a boolean weighted');
    const B = j.batch!;
    const dim = s.info.dim;
    const want = queryBytes(B, dim, sigma === null, alpha === null);
    if (want > this.o.maxPayloadBytes) fail(`a query payload of ${want} bytes, above this worker's limit of ${this.o.maxPayloadBytes}`);
    const size = await this.redis!.strlen(j.query);
    if (size === 0) fail(`no query payload under ${j.query} (expired, or the run was aborted)`);
    if (size !== want) fail(`a query payload of ${size} bytes where ${want} were expected`);
    const buf = await this.redis!.getBuffer(j.query);
    if (!buf) fail(`no query payload under ${j.query} (expired, or the run was aborted)`);
    // payload memory reused from job to job, given back only when a job succeeded
    const inMem = this.scratch.take();
    const outMem = this.scratch.take();
    let q;
    try {
      q = decodeQuery(buf, B, dim, inMem);
    } catch (err) {
      fail((err as Error).message);
    }
    if ((q.sigma === null) !== (sigma !== null) || (q.alpha === null) !== (alpha !== null)) fail('a query payload whose per-sample coefficients disagree with the job');
    let state;
    try {
      state = await s.ref.estimatePartialAsync(q.x, {
        sigma: q.sigma ?? sigma!,
        ...(q.alpha || alpha !== 1 ? { alpha: q.alpha ?? alpha! } : {}),
        kernel,
        weighted: j.weighted,
      });
    } catch (err) {
      // input the estimator refuses (a coded error) is final; anything else may be retried
      if (err instanceof ScorefieldError) fail(`${err.code}: ${err.message}`);
      throw err;
    }
    const out = encodeState(state, outMem);
    await this.redis!.set(j.result, out, 'PX', j.ttl!);
    this.scratch.give(inMem, outMem);
    const seconds = (performance.now() - t0) / 1000;
    await this.o.onJob?.({ shard: { ...s.info }, batch: B, attempt: job.attemptsMade + 1, seconds });
    return { bytes: out.length, seconds };
  }

  /** Stops serving: deregisters, lets running jobs finish, closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.beat) clearInterval(this.beat);
    const k = keys(this.o.name);
    if (this.redis && this.redis.status === 'ready') {
      await this.redis.multi().srem(k.workers, this.id).del(k.worker(this.id)).exec().catch(() => undefined);
    }
    // running jobs finish first, unless Redis is gone (then nothing could be reported anyway)
    const done = await withTimeout(Promise.allSettled(this.served.map((s) => s.worker?.close())), 10000, () => new Error('close timed out')).then(
      () => true,
      () => false,
    );
    if (!done) for (const s of this.served) void Promise.allSettled([s.worker?.disconnect()]);
    this.redis?.disconnect();
  }
}
