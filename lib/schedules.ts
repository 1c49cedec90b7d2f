/**
 * Noise schedules and sigma grids (docs/math.md sections 1 and 3), in double precision.
 *
 * A schedule maps time t to the Gaussian perturbation `x = alpha(t) x0 + sigma(t) eps` and
 * gives the derivatives the probability-flow ODE and flow-matching targets need. Grids are
 * decreasing Float64Arrays of sigmas, ending with 0 unless `appendZero: false`.
 */
import * as is from './is';

export interface Schedule {
  /** Family name: 've', 'edm', 'vp', 'vp-discrete', 'vp-cosine', 'linear'. */
  readonly name: string;
  /** The interval of t this schedule is defined on. */
  readonly tMin: number;
  readonly tMax: number;
  alpha(t: number): number;
  sigma(t: number): number;
  /** d alpha / dt */
  dAlpha(t: number): number;
  /** d sigma / dt */
  dSigma(t: number): number;
  /** The scaled noise level sigma/alpha: the EDM/VE variable every family maps onto. */
  scaledSigma(t: number): number;
  /** log(alpha^2 / sigma^2), the log signal-to-noise ratio. */
  logSnr(t: number): number;
  /** The t at which sigma/alpha equals s (the inverse of scaledSigma; bisection in double). */
  tOfScaledSigma(s: number): number;
}

function checkT(s: { name: string; tMin: number; tMax: number }, t: unknown): number {
  if (typeof t !== 'number') throw is.typeError('a number', 't', t);
  if (!(t >= s.tMin && t <= s.tMax)) {
    throw is.rangeError(`a number in [${s.tMin}, ${s.tMax}] (the ${s.name} schedule's domain)`, 't', t);
  }
  return t;
}

interface Parts {
  name: string;
  tMin: number;
  tMax: number;
  alpha(t: number): number;
  sigma(t: number): number;
  dAlpha(t: number): number;
  dSigma(t: number): number;
  /** log(alpha^2/sigma^2) when a more accurate form than the generic one exists. */
  logSnr?(t: number): number;
}

function schedule(p: Parts): Schedule {
  const s: Schedule = {
    name: p.name,
    tMin: p.tMin,
    tMax: p.tMax,
    alpha: (t) => p.alpha(checkT(p, t)),
    sigma: (t) => p.sigma(checkT(p, t)),
    dAlpha: (t) => p.dAlpha(checkT(p, t)),
    dSigma: (t) => p.dSigma(checkT(p, t)),
    scaledSigma: (t) => p.sigma(checkT(p, t)) / p.alpha(t),
    logSnr: (t) => (p.logSnr ? p.logSnr(checkT(p, t)) : 2 * Math.log(p.alpha(checkT(p, t)) / p.sigma(t))),
    tOfScaledSigma: (target) => {
      is.scalar(target, 'sigma', 'nonnegative');
      const ss = (t: number) => p.sigma(t) / p.alpha(t);
      let lo = p.tMin;
      let hi = p.tMax === Number.MAX_VALUE ? Math.max(1, target) : p.tMax;
      while (p.tMax === Number.MAX_VALUE && ss(hi) < target) hi *= 2;
      if (!(target >= ss(lo)) || !(target <= ss(hi))) {
        throw is.rangeError(`a scaled noise level within [${ss(lo)}, ${ss(hi)}] (the ${p.name} schedule's range)`, 'sigma', target);
      }
      for (let i = 0; i < 200 && hi - lo > 1e-15 * Math.max(1, hi); i++) {
        const mid = 0.5 * (lo + hi);
        if (ss(mid) < target) lo = mid;
        else hi = mid;
      }
      return 0.5 * (lo + hi);
    },
  };
  return Object.freeze(s);
}

/**
 * Variance exploding (Song et al. 2021): alpha = 1, sigma(t) = sigmaMin (sigmaMax/sigmaMin)^t
 * for t in [0, 1].
 */
export function ve(options: { sigmaMin?: number; sigmaMax?: number } = {}): Schedule {
  const o = is.options<{ sigmaMin: number; sigmaMax: number }>(options, 'options');
  const lo = o.sigmaMin === undefined ? 0.01 : is.scalar(o.sigmaMin, 'options.sigmaMin', 'positive');
  const hi = o.sigmaMax === undefined ? 50 : is.scalar(o.sigmaMax, 'options.sigmaMax', 'positive');
  if (!(hi > lo)) throw is.rangeError(`a number > sigmaMin (${lo})`, 'options.sigmaMax', hi);
  const k = Math.log(hi / lo);
  return schedule({
    name: 've',
    tMin: 0,
    tMax: 1,
    alpha: () => 1,
    sigma: (t) => lo * Math.exp(k * t),
    dAlpha: () => 0,
    dSigma: (t) => lo * k * Math.exp(k * t),
  });
}

/** EDM's VE parameterisation (Karras et al. 2022): alpha = 1, sigma(t) = t, t >= 0. */
export function edm(): Schedule {
  return schedule({
    name: 'edm',
    tMin: 0,
    tMax: Number.MAX_VALUE,
    alpha: () => 1,
    sigma: (t) => t,
    dAlpha: () => 0,
    dSigma: () => 1,
  });
}

/**
 * Variance preserving, continuous (Song et al. 2021): alpha(t) = exp(-t^2 (bmax-bmin)/4 - t bmin/2),
 * sigma = sqrt(1 - alpha^2), t in [0, 1]. sigma uses expm1 so it stays accurate near t = 0.
 */
export function vp(options: { betaMin?: number; betaMax?: number } = {}): Schedule {
  const o = is.options<{ betaMin: number; betaMax: number }>(options, 'options');
  const bmin = o.betaMin === undefined ? 0.1 : is.scalar(o.betaMin, 'options.betaMin', 'nonnegative');
  const bmax = o.betaMax === undefined ? 20 : is.scalar(o.betaMax, 'options.betaMax', 'positive');
  if (!(bmax >= bmin)) throw is.rangeError(`a number >= betaMin (${bmin})`, 'options.betaMax', bmax);
  const logAlpha = (t: number) => -0.25 * t * t * (bmax - bmin) - 0.5 * t * bmin;
  const dLogAlpha = (t: number) => -0.5 * t * (bmax - bmin) - 0.5 * bmin;
  const sigma = (t: number) => Math.sqrt(-Math.expm1(2 * logAlpha(t)));
  return schedule({
    name: 'vp',
    tMin: 0,
    tMax: 1,
    alpha: (t) => Math.exp(logAlpha(t)),
    sigma,
    dAlpha: (t) => Math.exp(logAlpha(t)) * dLogAlpha(t),
    // d/dt sqrt(1 - a^2) = -a a' / sigma
    dSigma: (t) => (-Math.exp(2 * logAlpha(t)) * dLogAlpha(t)) / sigma(t),
    logSnr: (t) => 2 * logAlpha(t) - Math.log(-Math.expm1(2 * logAlpha(t))),
  });
}

export interface VpDiscreteSchedule extends Schedule {
  /** abar_k = prod_{i <= k} (1 - beta_i), k = 0 .. numTrainTimesteps-1. */
  readonly alphasCumprod: Float64Array;
  readonly betas: Float64Array;
}

/**
 * Variance preserving, discrete (DDPM, Ho et al. 2020): linear betas from betaStart to
 * betaEnd over numTrainTimesteps steps; alpha_k = sqrt(abar_k), sigma_k = sqrt(1 - abar_k)
 * at integer t = k in [0, numTrainTimesteps - 1]. Between integers log(abar) is linear, so
 * the derivatives are those of that interpolation (one-sided at integers: the right
 * segment, the left one at the last step).
 */
export function vpDiscrete(options: { betaStart?: number; betaEnd?: number; numTrainTimesteps?: number } = {}): VpDiscreteSchedule {
  const o = is.options<{ betaStart: number; betaEnd: number; numTrainTimesteps: number }>(options, 'options');
  const b0 = o.betaStart === undefined ? 1e-4 : is.scalar(o.betaStart, 'options.betaStart', 'positive');
  const b1 = o.betaEnd === undefined ? 0.02 : is.scalar(o.betaEnd, 'options.betaEnd', 'positive');
  const n = o.numTrainTimesteps === undefined ? 1000 : is.integer(o.numTrainTimesteps, 'options.numTrainTimesteps', 2, 1e7);
  if (b0 >= 1) throw is.rangeError('a number in (0, 1)', 'options.betaStart', b0);
  if (b1 >= 1) throw is.rangeError('a number in (0, 1)', 'options.betaEnd', b1);
  const betas = new Float64Array(n);
  const logAbar = new Float64Array(n);
  const abar = new Float64Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) {
    betas[k] = b0 + ((b1 - b0) * k) / (n - 1);
    acc += Math.log1p(-betas[k]);
    logAbar[k] = acc;
    abar[k] = Math.exp(acc);
  }
  const seg = (t: number) => Math.min(Math.floor(t), n - 2);
  const logA = (t: number) => {
    const k = seg(t);
    return logAbar[k] + (t - k) * (logAbar[k + 1] - logAbar[k]);
  };
  const slope = (t: number) => {
    const k = seg(t);
    return logAbar[k + 1] - logAbar[k];
  };
  const sigma = (t: number) => Math.sqrt(-Math.expm1(logA(t)));
  const base = schedule({
    name: 'vp-discrete',
    tMin: 0,
    tMax: n - 1,
    alpha: (t) => Math.exp(0.5 * logA(t)),
    sigma,
    dAlpha: (t) => 0.5 * Math.exp(0.5 * logA(t)) * slope(t),
    dSigma: (t) => (-0.5 * Math.exp(logA(t)) * slope(t)) / sigma(t),
    logSnr: (t) => logA(t) - Math.log(-Math.expm1(logA(t))),
  });
  return Object.freeze({ ...base, alphasCumprod: abar, betas });
}

/**
 * Variance preserving cosine schedule (Nichol & Dhariwal 2021): alpha(t) = sqrt(f(t)/f(0)),
 * f(t) = cos^2(((t + s)/(1 + s)) pi/2), t in [0, 1]. alpha(1) = 0, so sigma/alpha and
 * logSnr are infinite there. sigma uses cos^2 a - cos^2 b = sin(b - a) sin(b + a).
 */
export function vpCosine(options: { s?: number } = {}): Schedule {
  const o = is.options<{ s: number }>(options, 'options');
  const s = o.s === undefined ? 0.008 : is.scalar(o.s, 'options.s', 'nonnegative');
  const u = (t: number) => ((t + s) / (1 + s)) * (Math.PI / 2);
  const u0 = u(0);
  const c0 = Math.cos(u0);
  const du = Math.PI / (2 * (1 + s));
  const alpha = (t: number) => Math.max(0, Math.cos(u(t)) / c0);
  const sigma = (t: number) => Math.min(1, Math.sqrt(Math.max(0, Math.sin(u(t) - u0) * Math.sin(u(t) + u0))) / c0);
  return schedule({
    name: 'vp-cosine',
    tMin: 0,
    tMax: 1,
    alpha,
    sigma,
    dAlpha: (t) => (-Math.sin(u(t)) * du) / c0,
    dSigma: (t) => (t === 0 ? Infinity : (-alpha(t) * ((-Math.sin(u(t)) * du) / c0)) / sigma(t)),
  });
}

/** Linear interpolant / rectified flow: alpha = 1 - t, sigma = t, t in [0, 1]. */
export function linear(): Schedule {
  return schedule({
    name: 'linear',
    tMin: 0,
    tMax: 1,
    alpha: (t) => 1 - t,
    sigma: (t) => t,
    dAlpha: () => -1,
    dSigma: () => 1,
  });
}

export interface GridOptions {
  sigmaMin?: number;
  sigmaMax?: number;
  /** Append a final 0 (default true). */
  appendZero?: boolean;
}

function gridRange(o: GridOptions, defMin: number, defMax: number): [number, number, boolean] {
  const lo = o.sigmaMin === undefined ? defMin : is.scalar(o.sigmaMin, 'options.sigmaMin', 'positive');
  const hi = o.sigmaMax === undefined ? defMax : is.scalar(o.sigmaMax, 'options.sigmaMax', 'positive');
  if (!(hi >= lo)) throw is.rangeError(`a number >= sigmaMin (${lo})`, 'options.sigmaMax', hi);
  if (o.appendZero !== undefined && typeof o.appendZero !== 'boolean') {
    throw is.typeError('a boolean', 'options.appendZero', o.appendZero);
  }
  return [lo, hi, o.appendZero !== false];
}

/**
 * Karras et al. (2022) grid: s_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho,
 * i = 0..n-1, then 0. Defaults sigmaMin 0.002, sigmaMax 80, rho 7.
 */
export function karrasSigmas(n: number, options: GridOptions & { rho?: number } = {}): Float64Array {
  is.integer(n, 'n', 1, 1e7);
  const o = is.options<GridOptions & { rho: number }>(options, 'options');
  const [lo, hi, zero] = gridRange(o, 0.002, 80);
  const rho = o.rho === undefined ? 7 : is.scalar(o.rho, 'options.rho', 'positive');
  const out = new Float64Array(n + (zero ? 1 : 0));
  const a = hi ** (1 / rho);
  const b = lo ** (1 / rho);
  for (let i = 0; i < n; i++) out[i] = n === 1 ? hi : (a + (i / (n - 1)) * (b - a)) ** rho;
  return out;
}

/**
 * A VP-uniform-t grid: t_i uniform from tMax down to tMin (n points) on a schedule (default
 * vp()), mapped to the scaled noise levels sigma(t)/alpha(t), then 0.
 */
export function vpUniformSigmas(n: number, options: { schedule?: Schedule; tMin?: number; tMax?: number; appendZero?: boolean } = {}): Float64Array {
  is.integer(n, 'n', 1, 1e7);
  const o = is.options<{ schedule: Schedule; tMin: number; tMax: number; appendZero: boolean }>(options, 'options');
  const sch = o.schedule ?? vp();
  const tMin = o.tMin === undefined ? 1e-3 : is.scalar(o.tMin, 'options.tMin', 'nonnegative');
  const tMax = o.tMax === undefined ? sch.tMax : is.scalar(o.tMax, 'options.tMax', 'positive');
  if (!(tMax > tMin)) throw is.rangeError(`a number > tMin (${tMin})`, 'options.tMax', tMax);
  const zero = o.appendZero !== false;
  const out = new Float64Array(n + (zero ? 1 : 0));
  for (let i = 0; i < n; i++) out[i] = sch.scaledSigma(n === 1 ? tMax : tMax + (i / (n - 1)) * (tMin - tMax));
  return out;
}

/** Log-uniform grid from sigmaMax down to sigmaMin (n points), then 0. */
export function exponentialSigmas(n: number, options: GridOptions = {}): Float64Array {
  is.integer(n, 'n', 1, 1e7);
  const o = is.options<GridOptions>(options, 'options');
  const [lo, hi, zero] = gridRange(o, 0.002, 80);
  const out = new Float64Array(n + (zero ? 1 : 0));
  const a = Math.log(hi);
  const b = Math.log(lo);
  for (let i = 0; i < n; i++) out[i] = n === 1 ? hi : Math.exp(a + (i / (n - 1)) * (b - a));
  return out;
}
