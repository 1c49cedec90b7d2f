/**
 * The binary payloads of the distributed estimator. Queries and partial states travel as raw
 * little-endian Float32 / Float64 bytes behind a 32-byte header, stored under their own Redis
 * keys; a BullMQ job carries only small JSON (scalars, key names, the shard's identity). Every
 * decoder checks the magic, the version, the sizes against the header and against limits the
 * caller gives, and throws ScorefieldRemoteError on anything else: nothing in a payload is
 * evaluated, and a malformed one never reaches the native code.
 */
import { ScorefieldRemoteError } from '../errors';
import type { PartialState } from '../estimator';

const QUERY_MAGIC = 0x31514653; // 'SFQ1' little-endian
const STATE_MAGIC = 0x31534653; // 'SFS1'
const HEADER = 32;

/** A batch of queries with its per-sample coefficients (scalars travel in the job's JSON). */
export interface QueryPayload {
  x: Float32Array;
  batch: number;
  dim: number;
  /** Per-sample sigma / alpha, or null when the job's scalar applies. */
  sigma: Float32Array | null;
  alpha: Float32Array | null;
}

function bad(what: string): never {
  throw new ScorefieldRemoteError(`Expected a well-formed payload but received ${what}`);
}

function header(magic: number, batch: number, dim: number, flags: number, count = 0): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt32LE(magic, 0);
  h.writeUInt32LE(batch, 4);
  h.writeUInt32LE(dim, 8);
  h.writeUInt32LE(flags, 12);
  h.writeDoubleLE(count, 16);
  return h;
}

const bytesOf = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * Memory that payloads are encoded into and decoded into, kept from one evaluation to the
 * next. Memory fresh from the kernel is paid for page by page on first touch, which on some
 * machines costs far more than the copy itself (the development VM: 4.5-4.9 ms to copy 1.6 MB
 * into fresh memory, 0.05-0.08 ms into memory touched before; `npm run bench:distributed`,
 * distributed-fresh-memory). A scratch is leased by one evaluation or job at a time.
 */
export class Scratch {
  private buf = new ArrayBuffer(0);
  /** At least `n` bytes; the contents are unspecified. */
  bytes(n: number): ArrayBuffer {
    if (this.buf.byteLength < n) this.buf = new ArrayBuffer(Math.max(n, Math.ceil(this.buf.byteLength * 1.25)));
    return this.buf;
  }
  /** The bytes it holds. */
  get size(): number {
    return this.buf.byteLength;
  }
}

/**
 * Scratches to lease (one per payload of an evaluation or job in flight). Given back, they are
 * kept while the kept ones hold at most `keepBytes` in all, so a long-lived process holds on
 * to about one call's payloads, not to the peak of its concurrent calls.
 */
export class ScratchPool {
  private free: Scratch[] = [];
  private kept = 0;
  constructor(private readonly keepBytes = 64 << 20) {}
  take(): Scratch {
    const s = this.free.pop();
    if (!s) return new Scratch();
    this.kept -= s.size;
    return s;
  }
  give(...s: Scratch[]): void {
    for (const x of s) {
      if (this.kept + x.size > this.keepBytes) continue;
      this.free.push(x);
      this.kept += x.size;
    }
  }
  /** Bytes held by the scratches kept for reuse. */
  get keptBytes(): number {
    return this.kept;
  }
}

/** Concatenates `parts` into the scratch (or new memory without one); a Buffer of exactly their bytes. */
function concatInto(parts: Buffer[], scratch?: Scratch): Buffer {
  if (!scratch) return Buffer.concat(parts);
  const n = parts.reduce((a, b) => a + b.length, 0);
  const out = Buffer.from(scratch.bytes(n), 0, n);
  let at = 0;
  for (const p of parts) {
    p.copy(out, at);
    at += p.length;
  }
  return out;
}

/** Bytes of a query payload: header, the queries, and the per-sample coefficients it carries. */
export function queryBytes(batch: number, dim: number, perSampleSigma: boolean, perSampleAlpha: boolean): number {
  return HEADER + 4 * (batch * dim + (perSampleSigma ? batch : 0) + (perSampleAlpha ? batch : 0));
}

/** The query payload; in `scratch` when given (valid until the scratch is used again). */
export function encodeQuery(q: QueryPayload, scratch?: Scratch): Buffer {
  const flags = (q.sigma ? 1 : 0) | (q.alpha ? 2 : 0);
  const parts = [header(QUERY_MAGIC, q.batch, q.dim, flags), bytesOf(q.x)];
  if (q.sigma) parts.push(bytesOf(q.sigma));
  if (q.alpha) parts.push(bytesOf(q.alpha));
  return concatInto(parts, scratch);
}

/**
 * Aligned typed arrays copied out of a payload, one after another in the scratch's memory (or
 * each in new memory without one).
 */
class Reader {
  private at = HEADER;
  private out = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly mem: ArrayBuffer | null,
  ) {}
  private take<T extends Float32Array | Float64Array>(make: (b: ArrayBuffer, off: number, n: number) => T, size: number, n: number): T {
    const a = this.mem ? make(this.mem, this.out, n) : make(new ArrayBuffer(size * n), 0, n);
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(this.buf.subarray(this.at, this.at + size * n));
    this.at += size * n;
    this.out += size * n;
    return a;
  }
  f32(n: number): Float32Array {
    return this.take((b, o, k) => new Float32Array(b, o, k), 4, n);
  }
  f64(n: number): Float64Array {
    return this.take((b, o, k) => new Float64Array(b, o, k), 8, n);
  }
}

function readHeader(buf: Buffer, magic: number, what: string) {
  if (!Buffer.isBuffer(buf)) bad(`${what}: not bytes`);
  if (buf.length < HEADER) bad(`${what} of ${buf.length} bytes (shorter than its header)`);
  if (buf.readUInt32LE(0) !== magic) bad(`${what} with an unknown magic or version`);
  return { batch: buf.readUInt32LE(4), dim: buf.readUInt32LE(8), flags: buf.readUInt32LE(12), count: buf.readDoubleLE(16) };
}

/**
 * Decodes a query payload, checking it holds exactly `batch` x `dim` queries; the arrays live
 * in `scratch` when given (valid until the scratch is used again).
 */
export function decodeQuery(buf: Buffer, batch: number, dim: number, scratch?: Scratch): QueryPayload {
  const h = readHeader(buf, QUERY_MAGIC, 'a query payload');
  if (h.batch !== batch || h.dim !== dim) bad(`a query payload of ${h.batch} x ${h.dim} where the job says ${batch} x ${dim}`);
  if (h.flags & ~3) bad(`a query payload with unknown flags ${h.flags}`);
  const n = batch * dim;
  const want = queryBytes(batch, dim, (h.flags & 1) !== 0, (h.flags & 2) !== 0);
  if (buf.length !== want) bad(`a query payload of ${buf.length} bytes where ${want} were expected`);
  const r = new Reader(buf, scratch ? scratch.bytes(want - HEADER) : null);
  const x = r.f32(n);
  const sigma = h.flags & 1 ? r.f32(batch) : null;
  const alpha = h.flags & 2 ? r.f32(batch) : null;
  // x's values are checked by the estimator itself (a coded ERR_SCOREFIELD_RANGE naming the index)
  if (sigma) for (let i = 0; i < batch; i++) if (!(sigma[i] > 0 && Number.isFinite(sigma[i]))) bad(`a per-sample sigma ${sigma[i]} at ${i}`);
  if (alpha) for (let i = 0; i < batch; i++) if (!Number.isFinite(alpha[i])) bad(`a per-sample alpha ${alpha[i]} at ${i}`);
  return { x, batch, dim, sigma, alpha };
}

/**
 * A partial state, every field in float64 (the weighted sums too: shards merge exactly, as in
 * one process; float32 sums would cost traceCov its cancellation-free accuracy).
 */
export function encodeState(s: PartialState, scratch?: Scratch): Buffer {
  const flags = s.weighted ? 1 : 0;
  const parts = [header(STATE_MAGIC, s.batch, s.dim, flags, s.count), bytesOf(s.origin), bytesOf(s.max), bytesOf(s.sum), bytesOf(s.sumSq), bytesOf(s.sumYY)];
  if (s.weighted) parts.push(bytesOf(s.weighted));
  return concatInto(parts, scratch);
}

/**
 * Decodes a partial state, checking its batch, dim, kind and row count against the job's; the
 * arrays live in `scratch` when given (valid until the scratch is used again).
 */
export function decodeState(buf: Buffer, batch: number, dim: number, weighted: boolean, rows: number, scratch?: Scratch): PartialState {
  const h = readHeader(buf, STATE_MAGIC, 'a partial state');
  if (h.batch !== batch || h.dim !== dim) bad(`a partial state of ${h.batch} x ${h.dim} where ${batch} x ${dim} was asked for`);
  if (h.flags !== (weighted ? 1 : 0)) bad(`a partial state ${h.flags ? 'with' : 'without'} weighted sums, unlike the request`);
  if (h.count !== rows) bad(`a partial state over ${h.count} rows from a shard of ${rows}`);
  const want = HEADER + 8 * (dim + 4 * batch + (weighted ? batch * dim : 0));
  if (buf.length !== want) bad(`a partial state of ${buf.length} bytes where ${want} were expected`);
  const r = new Reader(buf, scratch ? scratch.bytes(want - HEADER) : null);
  const next = (n: number) => r.f64(n);
  const origin = next(dim);
  const max = next(batch);
  const sum = next(batch);
  const sumSq = next(batch);
  const sumYY = next(batch);
  const w = weighted ? next(batch * dim) : null;
  return { batch, dim, count: h.count, origin, max, sum, sumSq, sumYY, weighted: w };
}
