/**
 * A real ONNX model through scorefield's samplers: models built here with onnx-proto (the exact
 * denoiser of Gaussian data, with sigma as an input, and its eps-prediction form), run by
 * onnxruntime-node through onnxDenoiser (sampleHeun, sampleEuler) and through the
 * diffusers-style schedulers, and the samples checked against the ODE's closed form.
 */
import test from 'ava';
import * as ort from 'onnxruntime-node';
import { EulerDiscreteScheduler, fromEps, HeunDiscreteScheduler, onnxDenoiser, randn, sampleEuler, sampleHeun, schedules } from '../lib/index';
import { gaussianDenoiserModel, gaussianEpsModel } from '../examples/gaussian-onnx';

const d = 6;
const B = 32;
const mu = Float32Array.from({ length: d }, (_, k) => 0.5 * k - 1);
const s2 = 0.25; // data N(mu, 0.5^2 I)

/** The probability-flow ODE's exact solution from (x, sigma0) to sigma = 0, per coordinate. */
const closedForm = (x0: Float32Array, sigma0: number) =>
  Float64Array.from(x0, (v, i) => mu[i % d] + Math.sqrt(s2 / (s2 + sigma0 * sigma0)) * (v - mu[i % d]));

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('onnxDenoiser: sampleHeun and sampleEuler with an ONNX denoiser land on the closed form; inputs and outputs are not copied', async (t) => {
  const session = await ort.InferenceSession.create(gaussianDenoiserModel(mu, s2));
  const sigmas = schedules.karrasSigmas(80, { sigmaMax: 20 });
  const x0 = randn(B * d, { seed: 1, dim: d }).map((v) => v * 20);
  const want = closedForm(x0, 20);
  // the denoiser sees the sampler's arrays and returns the ONNX output's own array
  let seen: Float32Array | null = null;
  const inner = onnxDenoiser(ort.Tensor, session, { shape: [d], sigmaShape: 'batch1' });
  const spy = async (x: Float32Array, s: number) => {
    const out = await inner(x, s);
    seen = out;
    return out;
  };
  const heun = await sampleHeun(spy, x0, sigmas, { dim: d });
  t.true(seen !== null && (seen as Float32Array).length === B * d);
  t.log(`80 Heun steps: ${maxErr(heun, want)} from the closed form`);
  t.true(maxErr(heun, want) < 5e-3, `heun ${maxErr(heun, want)}`); // discretisation: 2.3e-3 at 80 steps, 2nd order
  const euler = await sampleEuler(inner, x0, sigmas, { dim: d });
  t.log(`80 Euler steps: ${maxErr(euler, want)}`);
  t.true(maxErr(euler, want) < 0.1, `euler ${maxErr(euler, want)}`);
  t.true(maxErr(heun, want) < maxErr(euler, want) / 5, 'Heun is not more accurate than Euler');
  // zero-copy in: an ONNX input tensor over the very array handed in
  const x = new Float32Array(B * d).fill(0.3);
  const feeds = new ort.Tensor('float32', x, [B, d]);
  t.is(feeds.data, x);
  // the same samples as a JS denoiser with the same formula, to float32 rounding
  const js = async (y: Float32Array, s: number) => Float32Array.from(y, (v, i) => mu[i % d] + (s2 / (s2 + s * s)) * (v - mu[i % d]));
  t.true(maxErr(heun, await sampleHeun(js, x0, sigmas, { dim: d })) < 1e-4);
});

test('onnxDenoiser with an eps-prediction model (parameterization eps) and diffusers-style schedulers', async (t) => {
  const session = await ort.InferenceSession.create(gaussianEpsModel(mu, s2));
  const sigmas = schedules.karrasSigmas(80, { sigmaMax: 10 });
  const x0 = randn(B * d, { seed: 2, dim: d }).map((v) => v * 10);
  // an eps model of diffusers' kind sees x / sqrt(sigma^2 + 1); fromEps turns its output into
  // a denoiser at x
  const epsAtX = async (x: Float32Array, s: number) => {
    const r = await session.run({ x_in: new ort.Tensor('float32', x.map((v) => v / Math.sqrt(s * s + 1)), [B, d]), sigma: new ort.Tensor('float32', new Float32Array(B).fill(s), [B, 1]) });
    return r.eps.data as Float32Array;
  };
  const heun = await sampleHeun(fromEps(epsAtX), x0, sigmas, { dim: d });
  t.log(`eps model, 80 Heun steps: ${maxErr(heun, closedForm(x0, 10))}`);
  t.true(maxErr(heun, closedForm(x0, 10)) < 5e-3, `heun ${maxErr(heun, closedForm(x0, 10))}`);
  // an eps model at x itself goes straight through onnxDenoiser's parameterization option
  const plain = await ort.InferenceSession.create(gaussianEpsModel(mu, s2, false));
  const viaAdapter = await sampleHeun(onnxDenoiser(ort.Tensor, plain, { shape: [d], sigmaShape: 'batch1', parameterization: 'eps' }), x0, sigmas, { dim: d });
  t.true(maxErr(viaAdapter, heun) < 1e-4, `adapter ${maxErr(viaAdapter, heun)}`);

  // the diffusers schedulers: model input scaled by scaleModelInput, the model given sigma
  for (const Scheduler of [EulerDiscreteScheduler, HeunDiscreteScheduler]) {
    const sch = new Scheduler({ betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear', useKarrasSigmas: true });
    sch.setTimesteps(25);
    const sigma0 = sch.sigmas[0];
    const start = randn(B * d, { seed: 3, dim: d }).map((v) => v * sch.initNoiseSigma);
    let x: Float32Array = start;
    for (let i = 0; i < sch.timesteps.length; i++) {
      const tt = sch.timesteps[i];
      const inp = sch.scaleModelInput(x, tt);
      const sigma = sch.sigmas[i];
      const r = await session.run({ x_in: new ort.Tensor('float32', inp, [B, d]), sigma: new ort.Tensor('float32', new Float32Array(B).fill(sigma), [B, 1]) });
      x = sch.step(r.eps.data as Float32Array, tt, x).prevSample; // the output tensor's array, as is
    }
    // the diffusers grid ends at sigma_min then 0 on a coarse grid: Euler's error is larger
    const err = maxErr(x, closedForm(start, sigma0));
    t.log(`${Scheduler.name}, 25 steps: ${err}`);
    t.true(err < (Scheduler === HeunDiscreteScheduler ? 0.05 : 0.3), `${Scheduler.name} ${err}`);
  }
});

test('onnxDenoiser checks its arguments and the model output', async (t) => {
  const session = await ort.InferenceSession.create(gaussianDenoiserModel(mu, s2));
  t.throws(() => onnxDenoiser(ort.Tensor, session, { shape: [] }), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => onnxDenoiser(ort.Tensor, session, { shape: [d], input: 'nope' }), { code: 'ERR_SCOREFIELD_TYPE', message: /x, sigma/ });
  t.throws(() => onnxDenoiser(ort.Tensor, session, { shape: [d], output: 'nope' }), { code: 'ERR_SCOREFIELD_TYPE', message: /denoised/ });
  t.throws(() => onnxDenoiser(42 as never, session, { shape: [d] }), { code: 'ERR_SCOREFIELD_TYPE' });
  // a model whose per-sample size is not the declared shape: the sampler reports it
  const wrong = onnxDenoiser(ort.Tensor, session, { shape: [d + 1], sigmaShape: 'batch1' });
  await t.throwsAsync(sampleHeun(wrong, new Float32Array(2 * d), [1, 0], { dim: d }), { code: 'ERR_SCOREFIELD_DENOISER' });
});

test('examples/onnx-sampling.ts runs and shows second-order convergence', (t) => {
  const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
  const out = execFileSync(process.execPath, ['--import', 'tsx', require('node:path').join(__dirname, '..', 'examples', 'onnx-sampling.ts')], { encoding: 'utf8' });
  const errs = [...out.matchAll(/closed form ([0-9.e+-]+)/g)].map((m) => Number(m[1]));
  t.is(errs.length, 2, out);
  t.true(errs[0] / errs[1] > 3 && errs[0] / errs[1] < 5.5, out); // twice the steps, about 4x less error
});
