// Shared helpers for the microbenchmarks: timing with medians, JSON-lines output.
import { performance } from 'node:perf_hooks';

/** The value after `--name` on the command line, or def. */
export function flag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

/** The number after `--name` on the command line, or def. */
export function numFlag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** Median seconds per call of fn over `reps` timed runs of `inner` calls each (after a warm-up). */
export function timeSync(fn: () => unknown, reps = 7, inner = 1): number {
  for (let i = 0; i < Math.max(1, Math.ceil(inner / 4)); i++) fn();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    samples.push((performance.now() - t0) / 1000 / inner);
  }
  return median(samples);
}

/**
 * Times two functions in alternation (a, b, a, b, ...) and returns both medians, so that a
 * ratio between them is not skewed by the machine's load drifting between two separate
 * measurements.
 */
export function timePair(a: () => unknown, b: () => unknown, reps = 7): [number, number] {
  a();
  b();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let r = 0; r < reps; r++) {
    let t0 = performance.now();
    a();
    ta.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    b();
    tb.push((performance.now() - t0) / 1000);
  }
  return [median(ta), median(tb)];
}

export async function timeAsync(fn: () => Promise<unknown>, reps = 7, inner = 1): Promise<number> {
  await fn();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) await fn();
    samples.push((performance.now() - t0) / 1000 / inner);
  }
  return median(samples);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Prints one machine-readable result line on stdout. */
export function emit(record: Record<string, unknown>): void {
  const rounded: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) {
    rounded[k] = typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v;
  }
  process.stdout.write(JSON.stringify(rounded) + '\n');
}

export function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/**
 * `count` training rows spread evenly over the n rows of a set (rows 7, 7 + n/count, ...): the
 * queries' own rows lie everywhere in the set, as a sampler's do, not all in its first tile
 * (earlier sweeps used the first 256 rows, which flattered pruning: each query's nearest row
 * was in the first tile the scan visits).
 */
export function spreadRows(data: Float32Array, n: number, d: number, count = 256): Float32Array {
  const out = new Float32Array(count * d);
  for (let i = 0; i < count; i++) {
    const r = Math.floor((i * n) / count) + 7;
    out.set(data.subarray(r * d, (r + 1) * d), i * d);
  }
  return out;
}
