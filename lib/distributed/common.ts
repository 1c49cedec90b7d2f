/**
 * What the coordinator and the workers share: the Redis connection options, the names of the
 * keys and BullMQ queues of a set, the registration record of a worker, the job's JSON and the
 * content hash of a shard.
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { ScorefieldRemoteError } from '../errors';
import * as is from '../is';
import type { KernelArg } from '../native';

/** A Redis server: a `redis://` or `rediss://` URL (password and TLS pass through), or ioredis options. */
export type Connection = string | RedisOptions;

/** BullMQ's key prefix for scorefield's queues. */
export const PREFIX = 'scorefield';

/** Protocol version of the job JSON and the payloads (bumped on any incompatible change). */
export const VERSION = 1;

/** ioredis options from a URL or options (a copy: callers' objects are never changed). */
export function redisOptions(c: Connection, name = 'options.connection'): RedisOptions {
  if (typeof c === 'string') {
    let u: URL;
    try {
      u = new URL(c);
    } catch {
      throw is.typeError('a redis:// or rediss:// URL or ioredis options', name, c);
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw is.typeError('a redis:// or rediss:// URL or ioredis options', name, `${u.protocol}//...`);
    // ioredis parses the URL itself (user, password, db, TLS for rediss://) without connecting
    const probe = new Redis(c, { lazyConnect: true });
    const o = { ...probe.options };
    probe.disconnect();
    return o;
  }
  if (!is.isPlainObject(c)) throw is.typeError('a redis:// or rediss:// URL or ioredis options', name, c);
  return { ...(c as RedisOptions) };
}

/** Where a connection goes, without its password, for messages. */
export function describeConnection(o: RedisOptions): string {
  return `${o.tls ? 'rediss' : 'redis'}://${o.host ?? 'localhost'}:${o.port ?? 6379}`;
}

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export function checkName(v: unknown, name = 'options.name'): string {
  if (typeof v !== 'string' || !NAME.test(v)) throw is.typeError('a set name of 1 to 100 letters, digits, _ . -', name, v);
  return v;
}

/** The Redis keys of a set (all under scorefield:<name>:). */
export function keys(set: string) {
  const base = `${PREFIX}:${set}`;
  return {
    base,
    workers: `${base}:workers`,
    worker: (id: string) => `${base}:worker:${id}`,
    query: (run: string, ev: number) => `${base}:q:${run}:${ev}`,
    result: (run: string, ev: number, shard: string) => `${base}:r:${run}:${ev}:${shard}`,
  };
}

/** One shard as a worker registers it: rows [begin, end) of the set, dim, content hash. */
export interface ShardInfo {
  begin: number;
  end: number;
  dim: number;
  /** SHA-256 (hex) of dim and the shard's float32 rows. */
  hash: string;
}

/** A worker's registration record (JSON under keys(set).worker(id), with a TTL its heartbeat renews). */
export interface WorkerRecord {
  v: number;
  id: string;
  host: string;
  pid: number;
  shards: ShardInfo[];
}

/** The shard's key in queue names and result keys: its rows and the head of its hash. */
export function shardKey(s: ShardInfo): string {
  return `${s.begin}-${s.end}-${s.hash.slice(0, 16)}`;
}

/** The BullMQ queue of one shard of a set (replicas of a shard share it). */
export function queueName(set: string, s: ShardInfo): string {
  return `${set}.${shardKey(s)}`;
}

export function contentHash(rows: Float32Array, dim: number): string {
  const h = createHash('sha256');
  const d = Buffer.alloc(4);
  d.writeUInt32LE(dim, 0);
  h.update(d);
  h.update(Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength));
  return h.digest('hex');
}

/** The kernel as it travels in a job (plain JSON, decoded by a whitelist). */
export type WireKernel = { kind: 'gaussian' } | { kind: 'poisson'; D: number } | { kind: 'radial'; family: 'tanh' | 'exp' };

export function wireKernel(k: KernelArg): WireKernel {
  if (k === 0) return { kind: 'gaussian' };
  if (Array.isArray(k)) return { kind: 'poisson', D: k[1] };
  return { kind: 'radial', family: k === 2 ? 'tanh' : 'exp' };
}

/** An estimatePartial job (JSON). The queries and the result travel under their own keys. */
export interface JobData {
  v: number;
  set: string;
  shard: ShardInfo;
  /** Key of the query payload, key the worker writes its partial state to. */
  query: string;
  result: string;
  batch: number;
  dim: number;
  /** Scalar sigma / alpha, or null when the payload holds per-sample values. */
  sigma: number | null;
  alpha: number | null;
  kernel: WireKernel;
  weighted: boolean;
  /** Milliseconds the result key lives. */
  ttl: number;
}

/** A coded error from a remote failure. */
export function remoteError(message: string, cause?: unknown): ScorefieldRemoteError {
  return new ScorefieldRemoteError(message, 'ERR_SCOREFIELD_REMOTE', cause === undefined ? undefined : { cause });
}

/** Rejects with the timeout's error when `p` does not settle within ms (the timer never keeps the process alive). */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
