/**
 * Drop-in ports of diffusers' EulerDiscreteScheduler and HeunDiscreteScheduler (their
 * semantics, camelCase), for pipelines that drive samplers through the diffusers scheduler
 * interface, for example Stable Diffusion on onnxruntime-node. The arithmetic reproduces what
 * diffusers computes on a CPU with AVX2 or AVX-512 (test/diffusers-parity.test.ts checks 252
 * configurations bit for bit against diffusers itself, scripts/diffusers-reference.py):
 *
 * - diffusers' float32 tensor arithmetic: Math.fround after every operation;
 * - torch.linspace for the betas: PyTorch's CPU kernel is compiled with fused multiply-adds on
 *   such machines (start + step i in one rounding), reproduced with an exact fmaf;
 * - torch.cumprod: float32 inputs accumulated in double;
 * - NumPy's float32 log (log of the training sigmas, behind the Karras timesteps): NumPy's
 *   AVX2/AVX-512 kernel, a rational P5/Q5 approximation evaluated with FMAs, which is not
 *   correctly rounded (up to about 4 ulp);
 * - NumPy's float64 steps: np.interp, np.linspace, the Karras sigmas, _sigma_to_t, and
 *   round-half-to-even.
 *
 * On a machine where PyTorch or NumPy take their baseline (non-FMA) paths, diffusers' own values
 * differ from these in the last bit of some betas and Karras timesteps; `step()` and
 * `scaleModelInput()` accept a timestep within 1e-4 (relative) of one of the scheduler's, so
 * timesteps copied from diffusers work either way. PyTorch's CPU sqrt (MKL's vector math, used
 * by `tensor ** 0.5`) is not correctly rounded on every CPU (1 ulp off for 15% of the training
 * sigmas on an AMD Zen 5) and cannot be reproduced outside PyTorch: scorefield's square roots are
 * correctly rounded, so its sigmas may differ from diffusers' by 1 ulp there, its Karras
 * timesteps by up to 8 ulp and the samples of a whole run by up to 1e-4 relative (measured on
 * the 252 configurations; with correctly rounded square roots all are bit for bit). Churn noise comes from scorefield's seeded Philox
 * generator (`seed`) unless `step()` is handed the noise (`options.noise`, the counterpart of
 * diffusers' generator); model outputs are Float32Arrays of the whole batch.
 */
import { ScorefieldRangeError, ScorefieldShapeError } from './errors';
import * as is from './is';
import { randn } from './targets';

const f = Math.fround;

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'sample' | 'v_prediction';
export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';

export interface DiffusersSchedulerConfig {
  numTrainTimesteps?: number;
  betaStart?: number;
  betaEnd?: number;
  betaSchedule?: BetaSchedule;
  trainedBetas?: ArrayLike<number>;
  predictionType?: PredictionType;
  useKarrasSigmas?: boolean;
  timestepSpacing?: TimestepSpacing;
  stepsOffset?: number;
}

export interface SchedulerStepOutput {
  prevSample: Float32Array;
  predOriginalSample: Float32Array;
}

/**
 * a * b + c for float32 a, b, c with one rounding to float32 (an FMA instruction). a * b is exact
 * in double; the sum's rounding error is recovered exactly (TwoSum), and decides the one case
 * where rounding the double sum would differ: a sum exactly halfway between two floats.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  if (r === s || !Number.isFinite(s)) return r;
  const other = 2 * s - r; // the float on the other side of s, when s is a midpoint
  if (f(other) !== other || other === r) return r;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return r; // a true tie: round half to even, as fround did
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/** A float32 from its bit pattern. */
function fromBits(u: number): number {
  const b = new Uint32Array([u]);
  return new Float32Array(b.buffer)[0];
}

// NumPy's float32 log kernel (AVX2 / AVX-512): its coefficients, as float32 bit patterns.
const LOG_P = [0x00000000, 0x3f800000, 0x4007361c, 0x3fbd70a9, 0x3ec30333, 0x3cd42bcd].map(fromBits);
const LOG_Q = [0x3f800000, 0x4027361c, 0x401cfe0d, 0x3f7c8ae4, 0x3e1e5bf3, 0x3bc083df].map(fromBits);
const SQRT1_2F = fromBits(0x3f3504f3);
const LOGE2F = fromBits(0x3f317218);

/**
 * np.log of a positive normal float32 on a CPU with AVX2 or AVX-512: x = m 2^e with m in
 * [sqrt(1/2), sqrt(2)), log(1 + y) for y = m - 1 as P(y)/Q(y) by Horner's rule in FMAs, plus
 * e ln 2 in one more FMA.
 */
export function numpyLogf(x: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, x, true);
  const u = buf.getUint32(0, true);
  let e = ((u >>> 23) & 0xff) - 126;
  buf.setUint32(0, (u & 0x007fffff) | 0x3f000000, true);
  let m = buf.getFloat32(0, true); // in [1/2, 1)
  if (m <= SQRT1_2F) {
    m = f(m + m);
    e -= 1;
  }
  const y = f(m - 1);
  let num = fmaf(LOG_P[5], y, LOG_P[4]);
  for (let k = 3; k >= 0; k--) num = fmaf(num, y, LOG_P[k]);
  let den = fmaf(LOG_Q[5], y, LOG_Q[4]);
  for (let k = 3; k >= 0; k--) den = fmaf(den, y, LOG_Q[k]);
  return fmaf(e, LOGE2F, f(num / den));
}

/** NumPy's round (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torch.linspace(start, end, n, dtype=float32) as PyTorch's CPU kernel computes it with FMA:
 * a float32 step, start + step i for the first half and end - step (n - 1 - i) for the second,
 * each in one rounding.
 */
function torchLinspace32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const s = f(start);
  const e = f(end);
  const step = n > 1 ? f(f(e - s) / (n - 1)) : 0;
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? fmaf(step, i, s) : fmaf(-step, n - i - 1, e);
  return out;
}

/** np.linspace(start, stop, num) in float64: arange times the step, plus start; the last is stop. */
function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : 0;
  for (let i = 0; i < num; i++) out[i] = (step === 0 ? ((i / div) * (stop - start)) : i * step) + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** np.interp(x, arange(len(fp)), fp) in float64. */
function interp(x: number, fp: Float32Array): number {
  const n = fp.length;
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  const j = Math.floor(x);
  if (x === j) return fp[j];
  const slope = fp[j + 1] - fp[j];
  return slope * (x - j) + fp[j];
}

abstract class DiscreteScheduler {
  readonly config: Required<Omit<DiffusersSchedulerConfig, 'trainedBetas'>> & { trainedBetas?: ArrayLike<number> };
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: Float32Array;
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  protected stepIndex: number | null = null;
  /** Seed of the churn noise (scorefield's Philox, not torch's generator). */
  seed: bigint = 0n;

  protected constructor(config: DiffusersSchedulerConfig | undefined, defaults: { betaStart: number; betaEnd: number }) {
    const c = is.options<DiffusersSchedulerConfig>(config, 'config');
    const numTrainTimesteps = c.numTrainTimesteps === undefined ? 1000 : is.integer(c.numTrainTimesteps, 'config.numTrainTimesteps', 2, 1e6);
    const betaSchedule = c.betaSchedule ?? 'linear';
    if (!['linear', 'scaled_linear', 'squaredcos_cap_v2'].includes(betaSchedule)) {
      throw is.typeError('linear, scaled_linear or squaredcos_cap_v2', 'config.betaSchedule', betaSchedule);
    }
    const predictionType = c.predictionType ?? 'epsilon';
    if (!['epsilon', 'sample', 'v_prediction'].includes(predictionType)) {
      throw is.typeError('epsilon, sample or v_prediction', 'config.predictionType', predictionType);
    }
    const timestepSpacing = c.timestepSpacing ?? 'linspace';
    if (!['linspace', 'leading', 'trailing'].includes(timestepSpacing)) {
      throw is.typeError('linspace, leading or trailing', 'config.timestepSpacing', timestepSpacing);
    }
    if (c.useKarrasSigmas !== undefined && typeof c.useKarrasSigmas !== 'boolean') throw is.typeError('a boolean', 'config.useKarrasSigmas', c.useKarrasSigmas);
    this.config = {
      numTrainTimesteps,
      betaStart: c.betaStart === undefined ? defaults.betaStart : is.scalar(c.betaStart, 'config.betaStart', 'positive'),
      betaEnd: c.betaEnd === undefined ? defaults.betaEnd : is.scalar(c.betaEnd, 'config.betaEnd', 'positive'),
      betaSchedule,
      trainedBetas: c.trainedBetas,
      predictionType,
      useKarrasSigmas: c.useKarrasSigmas ?? false,
      timestepSpacing,
      stepsOffset: c.stepsOffset === undefined ? 0 : is.integer(c.stepsOffset, 'config.stepsOffset', 0, numTrainTimesteps),
    };
    const N = numTrainTimesteps;
    if (c.trainedBetas !== undefined) {
      this.betas = Float32Array.from(c.trainedBetas as ArrayLike<number>);
      if (this.betas.length !== N) throw new ScorefieldShapeError(`Expected ${N} values for config.trainedBetas but received ${this.betas.length}`);
    } else if (betaSchedule === 'linear') {
      this.betas = torchLinspace32(this.config.betaStart, this.config.betaEnd, N);
    } else if (betaSchedule === 'scaled_linear') {
      this.betas = torchLinspace32(Math.sqrt(this.config.betaStart), Math.sqrt(this.config.betaEnd), N).map((v) => f(v * v));
    } else {
      const abar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      this.betas = Float32Array.from({ length: N }, (_, i) => Math.min(1 - abar((i + 1) / N) / abar(i / N), 0.999));
    }
    // torch.cumprod on CPU accumulates float32 inputs in double.
    this.alphasCumprod = new Float32Array(N);
    let acc = 1;
    for (let i = 0; i < N; i++) {
      acc *= f(1 - this.betas[i]);
      this.alphasCumprod[i] = acc;
    }
    this.timesteps = new Float32Array(0);
    this.sigmas = new Float32Array(0);
    this.setTimesteps(N);
  }

  /** ((1 - abar) / abar) ** 0.5 in float32, t = 0 .. N-1 (increasing). */
  protected trainSigmas(): Float32Array {
    return this.alphasCumprod.map((a) => f(Math.sqrt(f(f(1 - a) / a))));
  }

  /** The inference timesteps of diffusers' timestep_spacing, and the sigmas at them (float64). */
  protected baseSchedule(n: number): { timesteps: Float64Array; sigmas: Float64Array } {
    is.integer(n, 'numInferenceSteps', 1, this.config.numTrainTimesteps);
    const N = this.config.numTrainTimesteps;
    let ts: Float64Array;
    if (this.config.timestepSpacing === 'linspace') {
      const step = n > 1 ? (N - 1) / (n - 1) : 0;
      ts = Float64Array.from({ length: n }, (_, i) => f(i === n - 1 ? N - 1 : i * step)).reverse();
    } else if (this.config.timestepSpacing === 'leading') {
      const ratio = Math.floor(N / n);
      ts = Float64Array.from({ length: n }, (_, i) => f(roundHalfEven(i * ratio)) + this.config.stepsOffset).reverse();
    } else {
      const ratio = N / n;
      const vals: number[] = [];
      for (let k = 0; N - k * ratio > 0; k++) vals.push(f(roundHalfEven(N - k * ratio)) - 1);
      ts = Float64Array.from(vals);
    }
    const train = this.trainSigmas();
    let sigmas = Float64Array.from(ts, (t) => interp(t, train));
    if (this.config.useKarrasSigmas) {
      const lo = sigmas[sigmas.length - 1];
      const hi = sigmas[0];
      const rho = 7;
      const a = hi ** (1 / rho);
      const b = lo ** (1 / rho);
      const ramp = numpyLinspace(0, 1, sigmas.length);
      sigmas = Float64Array.from(ramp, (r) => (a + r * (b - a)) ** rho);
      const logSigmas = train.map((s) => numpyLogf(s));
      ts = Float64Array.from(sigmas, (s) => f(sigmaToT(s, logSigmas)));
    }
    return { timesteps: ts, sigmas };
  }

  abstract setTimesteps(numInferenceSteps: number): void;

  /** Standard deviation of the initial noise. */
  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) max = Math.max(max, s);
    if (this.config.timestepSpacing === 'linspace' || this.config.timestepSpacing === 'trailing') return max;
    return f(Math.sqrt(f(f(max * max) + 1)));
  }

  /** Index of timestep t (the second match when t repeats, as diffusers does at the start). */
  protected indexFor(t: number): number {
    const idx: number[] = [];
    for (let i = 0; i < this.timesteps.length; i++) if (this.timesteps[i] === f(t)) idx.push(i);
    if (idx.length === 0) {
      // a timestep from a diffusers whose sqrt or log rounds differently (module comment;
      // measured up to 8 ulp for Karras timesteps): the nearest of ours within 1e-4 relative,
      // far below the spacing of any two timesteps
      let best = -1;
      for (let i = 0; i < this.timesteps.length; i++) {
        const d = Math.abs(this.timesteps[i] - t);
        if (d <= 1e-4 * Math.max(1, Math.abs(this.timesteps[i])) && (best < 0 || d < Math.abs(this.timesteps[best] - t))) best = i;
      }
      if (best < 0) throw new ScorefieldRangeError(`Expected one of the scheduler's timesteps for timestep but received ${t}`);
      for (let i = 0; i < this.timesteps.length; i++) if (this.timesteps[i] === this.timesteps[best]) idx.push(i);
    }
    return idx.length > 1 ? idx[1] : idx[0];
  }

  protected current(t: number): number {
    if (typeof t !== 'number') throw is.typeError('a number (one of scheduler.timesteps)', 'timestep', t);
    if (this.stepIndex === null) this.stepIndex = this.indexFor(t);
    return this.stepIndex;
  }

  /** sample / sqrt(sigma^2 + 1): the model's input at timestep t (a new array). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    is.f32(sample, 'sample');
    const sigma = this.sigmas[this.current(timestep)];
    const den = f(Math.sqrt(f(f(sigma * sigma) + 1)));
    return sample.map((v) => f(v / den));
  }

  /** x0-prediction from the model output at noise level sigma (float32 semantics). */
  protected predOriginal(model: Float32Array, sample: Float32Array, sigmaInput: number): Float32Array {
    switch (this.config.predictionType) {
      case 'sample':
        return model.slice();
      case 'epsilon':
        return sample.map((v, i) => f(v - f(sigmaInput * model[i])));
      default: {
        const s2 = f(f(sigmaInput * sigmaInput) + 1);
        const c = f(-sigmaInput / f(Math.sqrt(s2)));
        return sample.map((v, i) => f(f(model[i] * c) + f(v / s2)));
      }
    }
  }

  /**
   * original + noise * sigma(t) per sample: `timesteps` holds one timestep per sample (B), or
   * one number for all.
   */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: number | ArrayLike<number>): Float32Array {
    const o = is.f32(original, 'original');
    const z = is.f32(noise, 'noise', o.length);
    const ts = typeof timesteps === 'number' ? [timesteps] : Array.from(timesteps as ArrayLike<number>);
    if (ts.length === 0 || o.length % ts.length !== 0) {
      throw new ScorefieldShapeError(`Expected one timestep per sample (a divisor of ${o.length}) for timesteps but received ${ts.length}`);
    }
    const d = o.length / ts.length;
    const out = new Float32Array(o.length);
    ts.forEach((t, b) => {
      const sigma = this.sigmas[this.indexFor(t)];
      for (let k = 0; k < d; k++) out[b * d + k] = f(o[b * d + k] + f(z[b * d + k] * sigma));
    });
    return out;
  }
}

/** diffusers' _sigma_to_t: piecewise-linear in log sigma over the training sigmas. */
function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (ls - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  const w = Math.min(1, Math.max(0, (lo - ls) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

/** diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2). */
export class EulerDiscreteScheduler extends DiscreteScheduler {
  static readonly order = 1;

  constructor(config?: DiffusersSchedulerConfig) {
    super(config, { betaStart: 0.0001, betaEnd: 0.02 });
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.baseSchedule(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = Float32Array.from(timesteps);
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.stepIndex = null;
  }

  /**
   * One Euler step from timestep t: `{ prevSample, predOriginalSample }`. Churn options follow
   * diffusers' step(). The churn noise is `options.noise` when given (one standard normal value
   * per element, the counterpart of diffusers' generator), and otherwise scorefield's seeded
   * noise (this.seed, stream = step index + 1, `options.dim` elements per sample).
   */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    options: { sChurn?: number; sTmin?: number; sTmax?: number; sNoise?: number; dim?: number; noise?: Float32Array } = {},
  ): SchedulerStepOutput {
    const x = is.f32(sample, 'sample');
    const m = is.f32(modelOutput, 'modelOutput', x.length);
    const o = is.options<{ sChurn: number; sTmin: number; sTmax: number; sNoise: number; dim: number; noise: Float32Array }>(options, 'options');
    const i = this.current(timestep);
    if (i + 1 >= this.sigmas.length) throw new ScorefieldRangeError(`Expected a timestep before the end of the schedule for timestep but received ${timestep}`);
    const sigma = this.sigmas[i];
    const sChurn = o.sChurn === undefined ? 0 : is.scalar(o.sChurn, 'options.sChurn', 'nonnegative');
    const sTmin = o.sTmin === undefined ? 0 : is.scalar(o.sTmin, 'options.sTmin', 'nonnegative');
    const sTmax = o.sTmax === undefined || o.sTmax === Infinity ? Infinity : is.scalar(o.sTmax, 'options.sTmax', 'nonnegative');
    const sNoise = o.sNoise === undefined ? 1 : is.scalar(o.sNoise, 'options.sNoise', 'nonnegative');
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), Math.SQRT2 - 1) : 0;
    const sigmaHat = f(sigma * f(gamma + 1));
    let s = x;
    if (gamma > 0) {
      // sample + (noise s_noise) (sigma_hat^2 - sigma^2)^0.5, in diffusers' float32 operations
      const z = o.noise !== undefined ? is.f32(o.noise, 'options.noise', x.length) : randn(x.length, { seed: this.seed, stream: i + 1, dim: o.dim });
      const c = f(Math.sqrt(f(f(sigmaHat * sigmaHat) - f(sigma * sigma))));
      s = x.map((v, k) => f(v + f(f(z[k] * sNoise) * c)));
    }
    // diffusers forms the v-prediction's clean sample with sigma, the epsilon one with sigma_hat
    const pred = this.predOriginal(m, s, this.config.predictionType === 'v_prediction' ? sigma : sigmaHat);
    const dt = f(this.sigmas[i + 1] - sigmaHat);
    const prev = s.map((v, k) => f(v + f(f(f(v - pred[k]) / sigmaHat) * dt)));
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: pred };
  }
}

/** diffusers' HeunDiscreteScheduler: each interval costs two model calls (order 2). */
export class HeunDiscreteScheduler extends DiscreteScheduler {
  static readonly order = 2;
  private prevDerivative: Float32Array | null = null;
  private dt: number | null = null;
  private sampleAtStart: Float32Array | null = null;

  constructor(config?: DiffusersSchedulerConfig) {
    super(config, { betaStart: 0.00085, betaEnd: 0.012 });
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.baseSchedule(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
    const s = [...sigmas, 0];
    // [s0, s1, s1, s2, s2, ..., s_{n-1}, s_{n-1}, 0]; timesteps [t0, t1, t1, ..., t_{n-1}, t_{n-1}]
    this.sigmas = Float32Array.from([s[0], ...s.slice(1, -1).flatMap((v) => [v, v]), s[s.length - 1]]);
    const t = Array.from(timesteps);
    this.timesteps = Float32Array.from([t[0], ...t.slice(1).flatMap((v) => [v, v])]);
    this.stepIndex = null;
    this.prevDerivative = null;
    this.dt = null;
    this.sampleAtStart = null;
  }

  /** True before the first model call of an interval (the Euler predictor). */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerStepOutput {
    const x = is.f32(sample, 'sample');
    const m = is.f32(modelOutput, 'modelOutput', x.length);
    const i = this.current(timestep);
    const first = this.stateInFirstOrder;
    const sigma = first ? this.sigmas[i] : this.sigmas[i - 1];
    const sigmaNext = first ? this.sigmas[i + 1] : this.sigmas[i];
    const sigmaHat = sigma; // gamma = 0
    const pred = this.predOriginal(m, x, first ? sigmaHat : sigmaNext);
    let prev: Float32Array;
    if (first) {
      const der = x.map((v, k) => f(f(v - pred[k]) / sigmaHat));
      const dt = f(sigmaNext - sigmaHat);
      this.prevDerivative = der;
      this.dt = dt;
      this.sampleAtStart = x.slice();
      prev = x.map((v, k) => f(v + f(der[k] * dt)));
    } else {
      const d1 = this.prevDerivative!;
      const dt = this.dt!;
      const start = this.sampleAtStart!;
      const der = x.map((v, k) => f(f(f(f(v - pred[k]) / sigmaNext) + d1[k]) / 2));
      prev = start.map((v, k) => f(v + f(der[k] * dt)));
      this.prevDerivative = null;
      this.dt = null;
      this.sampleAtStart = null;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: pred };
  }
}

/**
 * The noise grid diffusers' EulerDiscreteScheduler uses for `n` steps under `config`
 * (timestepSpacing, useKarrasSigmas, beta schedule), as a decreasing Float64Array ending
 * with 0 (unless appendZero: false), for scorefield's samplers.
 */
export function diffusersSigmas(n: number, config: DiffusersSchedulerConfig & { appendZero?: boolean } = {}): Float64Array {
  const { appendZero, ...rest } = is.options<DiffusersSchedulerConfig & { appendZero?: boolean }>(config, 'config');
  const s = new EulerDiscreteScheduler(rest);
  s.setTimesteps(n);
  const out = Float64Array.from(s.sigmas);
  return appendZero === false ? out.subarray(0, out.length - 1).slice() : out;
}
