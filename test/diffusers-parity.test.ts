/**
 * scorefield's EulerDiscreteScheduler and HeunDiscreteScheduler against diffusers itself: 252
 * configurations (Euler and Heun; linear and scaled_linear betas; epsilon, v_prediction and
 * sample; Karras sigmas on and off; linspace, leading and trailing spacing; 10, 25 and 50 steps;
 * Euler with churn), bit for bit at every step. test/fixtures/diffusers-reference.json is what
 * diffusers computed (scripts/diffusers-reference.py, PyTorch and NumPy on an AVX-512 CPU): the
 * timesteps, the sigmas, and a SHA-256 over every step's scaled model input, prev_sample and
 * pred_original_sample, for model outputs and churn noise that both sides form exactly.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { EulerDiscreteScheduler, HeunDiscreteScheduler, type DiffusersSchedulerConfig } from '../lib/index';
import { fmaf, numpyLogf } from '../lib/diffusers';

interface Run {
  timesteps: number[];
  sigmas: number[];
  initNoiseSigma: number;
  final: number[];
  hash: string;
}
interface Case {
  scheduler: 'euler' | 'heun';
  config: Record<string, unknown>;
  steps: number;
  churn: number;
  /** diffusers as it is, and with every float32 ** 0.5 correctly rounded (see the script) */
  raw: Run;
  cr: Run;
}
const ref = JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'diffusers-reference.json'), 'utf8')) as { elements: number; cases: Case[] };
const N = ref.elements;
const f = Math.fround;

const bitsOf = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));
const camel = (c: Record<string, unknown>): DiffusersSchedulerConfig => ({
  betaStart: c.beta_start as number,
  betaEnd: c.beta_end as number,
  betaSchedule: c.beta_schedule as DiffusersSchedulerConfig['betaSchedule'],
  predictionType: c.prediction_type as DiffusersSchedulerConfig['predictionType'],
  useKarrasSigmas: c.use_karras_sigmas as boolean,
  timestepSpacing: c.timestep_spacing as DiffusersSchedulerConfig['timestepSpacing'],
  stepsOffset: (c.steps_offset as number | undefined) ?? 0,
});
const label = (c: Case) => `${c.scheduler} ${JSON.stringify(c.config)} ${c.steps} steps${c.churn ? `, churn ${c.churn}` : ''}`;

/** The same loop as scripts/diffusers-reference.py, its hash over the same bytes. */
function run(c: Case) {
  const s = c.scheduler === 'euler' ? new EulerDiscreteScheduler(camel(c.config)) : new HeunDiscreteScheduler(camel(c.config));
  s.setTimesteps(c.steps);
  const h = createHash('sha256');
  const sigma0 = s.initNoiseSigma;
  let x: Float32Array = Float32Array.from({ length: N }, (_, k) => f(f((((k * 13) % 17) - 8) / 4) * sigma0));
  let final = x;
  Array.from(s.timesteps).forEach((t, i) => {
    const inp = s.scaleModelInput(x, t);
    const out = Float32Array.from(inp, (v, k) => f(f(v * 0.5) + (((k * 7 + i * 3) % 11) - 5) / 8));
    const noise = Float32Array.from({ length: N }, (_, k) => (((k * 5 + i) % 9) - 4) / 4);
    const r = s instanceof EulerDiscreteScheduler ? s.step(out, t, x, c.churn ? { sChurn: c.churn, noise } : {}) : s.step(out, t, x);
    for (const a of [inp, r.prevSample, r.predOriginalSample]) h.update(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    x = r.prevSample;
    final = x;
  });
  return { timesteps: bitsOf(s.timesteps), sigmas: bitsOf(s.sigmas), initNoiseSigma: bitsOf([sigma0])[0], final: bitsOf(final), hash: h.digest('hex') };
}

const asF = (u: number) => new Float32Array(Uint32Array.of(u).buffer)[0];
const ulps = (a: number, b: number) => Math.abs(new Int32Array(Uint32Array.of(a).buffer)[0] - new Int32Array(Uint32Array.of(b).buffer)[0]);

test('every configuration equals diffusers bit for bit (with float32 sqrt correctly rounded): timesteps, sigmas, every step', (t) => {
  t.is(ref.cases.length, 252);
  const bad: string[] = [];
  for (const c of ref.cases) {
    const r = run(c);
    const what: string[] = [];
    if (r.timesteps.join() !== c.cr.timesteps.join()) what.push('timesteps');
    if (r.sigmas.join() !== c.cr.sigmas.join()) what.push('sigmas');
    if (r.initNoiseSigma !== c.cr.initNoiseSigma) what.push('initNoiseSigma');
    if (r.hash !== c.cr.hash) what.push('steps');
    if (what.length) bad.push(`${label(c)}: ${what.join(', ')}`);
  }
  t.deepEqual(bad, []);
});

test('against diffusers as it is (PyTorch sqrt 1 ulp off on this CPU): sigmas within 1 ulp, timesteps within 8 ulp, samples within 1e-4; its timesteps accepted', (t) => {
  let sigmaUlp = 0;
  let tsUlp = 0;
  let rel = 0;
  let exact = 0;
  for (const c of ref.cases) {
    const r = run(c);
    r.sigmas.forEach((v, i) => (sigmaUlp = Math.max(sigmaUlp, ulps(v, c.raw.sigmas[i]))));
    r.timesteps.forEach((v, i) => (tsUlp = Math.max(tsUlp, ulps(v, c.raw.timesteps[i]))));
    r.final.forEach((v, i) => {
      const a = asF(v);
      const b = asF(c.raw.final[i]);
      rel = Math.max(rel, Math.abs(a - b) / Math.max(1e-3, Math.abs(b)));
    });
    if (r.hash === c.raw.hash) exact++;
  }
  t.log(`bit-identical to diffusers as it is: ${exact} of ${ref.cases.length}; largest differences: sigmas ${sigmaUlp} ulp, timesteps ${tsUlp} ulp, final samples ${rel.toExponential(2)} relative`);
  t.true(sigmaUlp <= 1, `sigmas ${sigmaUlp} ulp`);
  t.true(tsUlp <= 8, `timesteps ${tsUlp} ulp`);
  t.true(rel < 1e-4, `final samples ${rel}`);
  // every timestep diffusers printed is accepted, as the one of ours at the same position
  const x = new Float32Array(N).fill(1);
  let checked = 0;
  for (const c of ref.cases.filter((k) => k.config.use_karras_sigmas && k.steps !== 50)) {
    const make = () => {
      const s = c.scheduler === 'euler' ? new EulerDiscreteScheduler(camel(c.config)) : new HeunDiscreteScheduler(camel(c.config));
      s.setTimesteps(c.steps);
      return s;
    };
    const ours = make().timesteps;
    c.raw.timesteps.forEach((u, i) => {
      if (i > 0 && ours[i] === ours[i - 1]) return; // Heun repeats a timestep: the first call resolves it
      const a = make().scaleModelInput(x, asF(u));
      const b = make().scaleModelInput(x, ours[i]);
      if (a[0] !== b[0]) t.fail(`${label(c)}: diffusers' timestep ${asF(u)} (index ${i}) resolved to another step`);
      checked++;
    });
  }
  t.true(checked > 1000, String(checked));
});

test('a timestep copied from a diffusers that rounds differently (within 1e-4 relative) is accepted', (t) => {
  const make = () => {
    const s = new EulerDiscreteScheduler({ betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear', useKarrasSigmas: true });
    s.setTimesteps(25);
    return s;
  };
  const t3 = make().timesteps[3];
  const up = new Float32Array([t3]);
  new Uint32Array(up.buffer)[0] += 1; // one ulp above
  const x = new Float32Array(N).fill(1);
  t.deepEqual(Array.from(make().scaleModelInput(x, up[0])), Array.from(make().scaleModelInput(x, t3)));
  t.notDeepEqual(Array.from(make().scaleModelInput(x, t3)), Array.from(make().scaleModelInput(x, make().timesteps[4])));
  t.throws(() => make().scaleModelInput(x, t3 + 0.5), { code: 'ERR_SCOREFIELD_RANGE' });
});

test('fmaf rounds once, and numpyLogf is NumPy float32 log (against values NumPy printed)', (t) => {
  const a = f(1 + 2 ** -12);
  const b = f(1 + 2 ** -12);
  // a*b = 1 + 2^-11 + 2^-24: a plain product then add rounds twice, an FMA once
  t.is(fmaf(a, b, -1), f(2 ** -11 + 2 ** -24));
  t.not(f(f(a * b) - 1), f(2 ** -11 + 2 ** -24));
  // NumPy 2.4 on AVX-512, np.log of float32 inputs where it is not the correctly rounded log
  // (inputs, NumPy's results and the correctly rounded ones as bit patterns)
  const cases = [
    [0x412c38cc, 0x40181394, 0x40181393],
    [0x40823e4c, 0x3fb3ab6b, 0x3fb3ab6a],
    [0x40b37e5d, 0x3fdcb942, 0x3fdcb943],
    [0x4167f2e4, 0x402b21a3, 0x402b21a2],
    [0x3f000000, 0xbf317218, 0xbf317218], // log 0.5
    [0x41200000, 0x40135d8e, 0x40135d8e], // log 10
  ];
  const asF = (u: number) => new Float32Array(Uint32Array.of(u).buffer)[0];
  const asU = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0];
  for (const [x, np, exact] of cases) {
    t.is(asU(numpyLogf(asF(x))).toString(16), np.toString(16));
    t.is(asU(f(Math.log(asF(x)))).toString(16), exact.toString(16));
  }
});
