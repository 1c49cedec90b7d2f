// Float64 references written from docs/math.md, independently of the library's code.
export type Coef = number | Float32Array;
export const at = (c: Coef, i: number): number => (typeof c === 'number' ? c : c[i]);

/** Deterministic pseudo-random Float32Array in [lo, hi) (mulberry32; test data only). */
export function rand(n: number, seed: number, lo = -2, hi = 2): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * u;
  }
  return out;
}

/** Applies f(i, k, row) over a B x d layout, returning value and term magnitude arrays. */
export function rows(
  B: number,
  d: number,
  f: (row: number, idx: number) => [value: number, magnitude: number],
): { value: Float64Array; mag: Float64Array } {
  const value = new Float64Array(B * d);
  const mag = new Float64Array(B * d);
  for (let i = 0; i < B; i++) {
    for (let k = 0; k < d; k++) {
      const [v, m] = f(i, i * d + k);
      value[i * d + k] = v;
      mag[i * d + k] = m;
    }
  }
  return { value, mag };
}

/**
 * Max over elements of |got - want| / (mag + floor): the error relative to the size of the
 * terms that were combined (a difference of nearly equal terms cannot be more exact).
 */
export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>, mag: ArrayLike<number>, floor = 1e-30): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (mag[i] + floor);
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

export function refConvert(from: string, to: string, m: number, x: number, al: number, sg: number): number {
  let x0: number;
  let eps: number;
  const S = al * al + sg * sg;
  switch (from) {
    case 'eps':
      eps = m;
      x0 = (x - sg * m) / al;
      break;
    case 'x0':
      x0 = m;
      eps = (x - al * m) / sg;
      break;
    case 'v':
      x0 = (al * x - sg * m) / S;
      eps = (sg * x + al * m) / S;
      break;
    default:
      x0 = (x + sg * sg * m) / al;
      eps = -sg * m;
  }
  switch (to) {
    case 'eps':
      return eps;
    case 'x0':
      return x0;
    case 'v':
      return al * eps - sg * x0;
    default:
      return -eps / sg;
  }
}

export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}
