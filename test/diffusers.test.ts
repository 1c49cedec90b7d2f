// The diffusers-compatible schedulers: anchors that diffusers itself produces for Stable
// Diffusion's configuration, and equivalence of their loops with scorefield's samplers.
import test from 'ava';
import { diffusersSigmas, EulerDiscreteScheduler, HeunDiscreteScheduler, randn, sampleEuler, sampleHeun, type PredictionType } from '../lib/index';
import { exactDenoiser, mixture2d } from './helpers/mixture';

const SD = { betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' as const };

test('timesteps and sigmas: linspace, leading with stepsOffset, trailing, Karras', (t) => {
  const e = new EulerDiscreteScheduler(SD);
  t.true(Math.abs(e.initNoiseSigma - 14.6146) < 1e-3, `${e.initNoiseSigma}`); // SD's well-known value
  e.setTimesteps(50);
  t.is(e.timesteps.length, 50);
  t.is(e.sigmas.length, 51);
  t.is(e.timesteps[0], 999);
  t.true(Math.abs(e.timesteps[1] - 978.6122) < 1e-3);
  t.is(e.timesteps[49], 0);
  t.is(e.sigmas[50], 0);
  // sigma(t) = sqrt((1 - abar_t) / abar_t), interpolated linearly in t
  const ab = e.alphasCumprod;
  const s = (k: number) => Math.sqrt((1 - ab[k]) / ab[k]);
  const t1 = e.timesteps[1];
  const k = Math.floor(t1);
  t.true(Math.abs(e.sigmas[1] - (s(k) + (s(k + 1) - s(k)) * (t1 - k))) < 1e-5 * e.sigmas[1]);
  const lead = new EulerDiscreteScheduler({ ...SD, timestepSpacing: 'leading', stepsOffset: 1 });
  lead.setTimesteps(50);
  t.deepEqual(Array.from(lead.timesteps), Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
  t.true(Math.abs(lead.initNoiseSigma - Math.sqrt(lead.sigmas[0] ** 2 + 1)) < 1e-5);
  const trail = new EulerDiscreteScheduler({ ...SD, timestepSpacing: 'trailing' });
  trail.setTimesteps(50);
  t.deepEqual(Array.from(trail.timesteps), Array.from({ length: 50 }, (_, i) => 999 - 20 * i));
  const trail3 = new EulerDiscreteScheduler({ ...SD, timestepSpacing: 'trailing' });
  trail3.setTimesteps(3); // 1000/3: NumPy's round-half-to-even decides 666.67 -> 667, 333.33 -> 333
  t.deepEqual(Array.from(trail3.timesteps), [999, 666, 332]);
  const kar = new EulerDiscreteScheduler({ ...SD, useKarrasSigmas: true });
  kar.setTimesteps(25);
  const a = kar.sigmas[0] ** (1 / 7);
  const b = kar.sigmas[24] ** (1 / 7);
  for (let i = 0; i < 25; i++) t.true(Math.abs(kar.sigmas[i] - (a + (i / 24) * (b - a)) ** 7) < 1e-5 * kar.sigmas[i]);
  t.is(kar.timesteps[0], 999);
  for (let i = 1; i < 25; i++) t.true(kar.timesteps[i] < kar.timesteps[i - 1]);
  const heun = new HeunDiscreteScheduler(SD);
  heun.setTimesteps(3);
  t.deepEqual(Array.from(heun.timesteps), [999, 499.5, 499.5, 0, 0]);
  t.is(heun.sigmas.length, 6);
  t.is(heun.sigmas[1], heun.sigmas[2]);
  const cos = new EulerDiscreteScheduler({ betaSchedule: 'squaredcos_cap_v2' });
  t.true(cos.betas[999] <= Math.fround(0.999) && cos.betas[0] > 0);
});

// A model of the Gaussian mixture in diffusers' (VP) variables: input x / sqrt(sigma^2 + 1) at t.
function vpModel(s: EulerDiscreteScheduler | HeunDiscreteScheduler, type: PredictionType) {
  const den = exactDenoiser(mixture2d());
  return (xin: Float32Array, timestep: number, sigma: number) => {
    const c = Math.sqrt(sigma * sigma + 1);
    const x = xin.map((v) => v * c);
    const D = den(x, sigma);
    if (type === 'sample') return D;
    const eps = x.map((v, i) => (v - D[i]) / sigma);
    if (type === 'epsilon') return eps;
    return eps.map((e, i) => (e - sigma * D[i]) / c); // v = alpha eps - sigma_vp x0
  };
}

for (const type of ['epsilon', 'v_prediction', 'sample'] as const) {
  test(`Euler and Heun scheduler loops equal scorefield's samplers (${type})`, async (t) => {
    const den = exactDenoiser(mixture2d());
    for (const Sched of [EulerDiscreteScheduler, HeunDiscreteScheduler]) {
      const s = new Sched({ ...SD, predictionType: type, useKarrasSigmas: true });
      s.setTimesteps(12);
      const model = vpModel(s, type);
      const noise = randn(2 * 32, { seed: 3, dim: 2 });
      let x: Float32Array = noise.map((v) => v * s.initNoiseSigma);
      const x0 = x.slice();
      let calls = 0;
      s.timesteps.forEach((ts, i) => {
        const sigma = s.sigmas[i];
        const out = model(s.scaleModelInput(x, ts), ts, sigma);
        calls++;
        x = s.step(out, ts, x).prevSample;
      });
      // scorefield: the same grid (distinct sigmas and the final 0)
      const grid = Array.from(new Set(Array.from(s.sigmas)));
      const ours = await (Sched === HeunDiscreteScheduler ? sampleHeun : sampleEuler)(den, x0, grid, { dim: 2 });
      let worst = 0;
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - ours[i]) / (1 + Math.abs(ours[i])));
      t.true(worst < 2e-4, `${Sched.name} ${type}: ${worst}`);
      t.is(calls, Sched === HeunDiscreteScheduler ? 2 * 12 - 1 : 12);
    }
  });
}

test('addNoise and scaleModelInput', (t) => {
  const s = new EulerDiscreteScheduler(SD);
  s.setTimesteps(10);
  const x0 = Float32Array.of(1, 2, 3, 4);
  const z = Float32Array.of(0.5, -0.5, 1, -1);
  const ts = [s.timesteps[2], s.timesteps[7]];
  const noisy = s.addNoise(x0, z, ts);
  t.true(Math.abs(noisy[0] - (1 + 0.5 * s.sigmas[2])) < 1e-5);
  t.true(Math.abs(noisy[3] - (4 - s.sigmas[7])) < 1e-5);
  const scaled = s.scaleModelInput(x0, s.timesteps[0]);
  t.true(Math.abs(scaled[1] - 2 / Math.sqrt(s.sigmas[0] ** 2 + 1)) < 1e-6);
  t.throws(() => s.addNoise(x0, z, [12345]), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => new EulerDiscreteScheduler({ betaSchedule: 'cubic' as 'linear' }), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => new EulerDiscreteScheduler({ predictionType: 'noise' as 'epsilon' }), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => s.setTimesteps(0), { code: 'ERR_SCOREFIELD_RANGE' });
});

test('diffusersSigmas gives the scheduler grid for the samplers', (t) => {
  const g = diffusersSigmas(20, { ...SD, timestepSpacing: 'trailing' });
  const s = new EulerDiscreteScheduler({ ...SD, timestepSpacing: 'trailing' });
  s.setTimesteps(20);
  t.deepEqual(Array.from(g), Array.from(s.sigmas));
  t.is(g[20], 0);
  t.is(diffusersSigmas(20, { ...SD, appendZero: false }).length, 20);
});
