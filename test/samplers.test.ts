import test from 'ava';
import { churnStep, eulerMaruyamaStep, eulerStep, fromEps, fromSchedule, fromScore, fromV, heunStep, langevinStep, randn, ReferenceSet, sampleEuler, sampleEulerMaruyama, sampleHeun, sampleLangevin, schedules, ScorefieldAbortError, ScorefieldDenoiserError, eulerStepAsync, heunStepAsync, eulerMaruyamaStepAsync, langevinStepAsync, churnStepAsync } from '../lib/index';
import { exactDenoiser, ks2, mixture2d, sampleMixture } from './helpers/mixture';
import { bitsEqual, rand } from './helpers/reference';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return worst <= tol;
};

test('step kernels follow docs/math.md in float64, with per-sample sigmas', (t) => {
  const B = 5;
  const d = 17;
  const x = rand(B * d, 1);
  const D = rand(B * d, 2);
  const s = rand(B, 3, 0.5, 2);
  const sn = s.map((v) => v * 0.6);
  const e = eulerStep(x, D, s, sn);
  const xp = e;
  const Dp = rand(B * d, 4);
  const h = heunStep(x, D, xp, Dp, s, sn);
  const z = randn(B * d, { seed: 9, stream: 3, dim: d });
  const em = eulerMaruyamaStep(x, D, s, sn, { noise: { seed: 9, stream: 3 } });
  const lv = langevinStep(x, D, s, 0.01, { noise: { seed: 9, stream: 3 } });
  const ch = churnStep(x, s, s.map((v) => v * 1.2), { noise: { seed: 9, stream: 3 }, sNoise: 1.007 });
  for (let i = 0; i < B; i++) {
    for (let k = 0; k < d; k++) {
      const j = i * d + k;
      const hh = sn[i] - s[i];
      const dd = (x[j] - D[j]) / s[i];
      t.true(Math.abs(e[j] - (x[j] + hh * dd)) < 1e-5 * (1 + Math.abs(x[j])));
      const d2 = (xp[j] - Dp[j]) / sn[i];
      t.true(Math.abs(h[j] - (x[j] + (hh * (dd + d2)) / 2)) < 1e-5 * (1 + Math.abs(x[j])));
      const f = 1 - sn[i] ** 2 / s[i] ** 2;
      t.true(Math.abs(em[j] - (x[j] + f * (D[j] - x[j]) + Math.sqrt(s[i] ** 2 - sn[i] ** 2) * z[j])) < 1e-5 * (1 + Math.abs(x[j])));
      t.true(Math.abs(lv[j] - (x[j] + (0.01 * (D[j] - x[j])) / s[i] ** 2 + Math.sqrt(0.02) * z[j])) < 1e-5 * (1 + Math.abs(x[j])));
      const hat = Math.fround(s[i] * 1.2);
      t.true(Math.abs(ch[j] - (x[j] + Math.sqrt(hat ** 2 - s[i] ** 2) * 1.007 * z[j])) < 1e-5 * (1 + Math.abs(x[j])));
    }
  }
  // The step onto 0 is D exactly; Heun onto 0 returns the Euler step.
  t.true(bitsEqual(eulerStep(x, D, s, 0), D));
  t.true(bitsEqual(heunStep(x, D, xp, Dp, s, 0), xp));
});

function odeError(heun: boolean, n: number, x0: Float32Array, den: (x: Float32Array, s: number) => Float32Array, ref: Float32Array) {
  const grid = schedules.karrasSigmas(n + 1, { sigmaMin: 0.05, sigmaMax: 20, appendZero: false });
  return (heun ? sampleHeun : sampleEuler)(den, x0, grid, { dim: 2 }).then((x) => {
    let e = 0;
    for (let i = 0; i < x.length; i++) e = Math.max(e, Math.abs(x[i] - ref[i]));
    return e;
  });
}

test('orders of accuracy on a Gaussian mixture: Euler about 1, Heun about 2 (fitted slopes)', async (t) => {
  const m = mixture2d();
  const den = exactDenoiser(m);
  const x0 = randn(2 * 64, { seed: 3, dim: 2 }).map((v) => v * 20);
  const ref = await sampleHeun(den, x0, schedules.karrasSigmas(2049, { sigmaMin: 0.05, sigmaMax: 20, appendZero: false }), { dim: 2 });
  const slope = (ns: number[], es: number[]) => {
    const lx = ns.map(Math.log);
    const ly = es.map(Math.log);
    const mx = lx.reduce((a, b) => a + b) / lx.length;
    const my = ly.reduce((a, b) => a + b) / ly.length;
    let num = 0;
    let den2 = 0;
    for (let i = 0; i < lx.length; i++) {
      num += (lx[i] - mx) * (ly[i] - my);
      den2 += (lx[i] - mx) ** 2;
    }
    return num / den2;
  };
  const ne = [64, 128, 256, 512];
  const ee = await Promise.all(ne.map((n) => odeError(false, n, x0, den, ref)));
  const nh = [8, 16, 32, 64];
  const eh = await Promise.all(nh.map((n) => odeError(true, n, x0, den, ref)));
  const se = slope(ne, ee);
  const sh = slope(nh, eh);
  t.log(`Euler errors ${ee.map((e) => e.toExponential(2)).join(' ')} slope ${se.toFixed(2)}`);
  t.log(`Heun errors ${eh.map((e) => e.toExponential(2)).join(' ')} slope ${sh.toFixed(2)}`);
  t.true(se < -0.8 && se > -1.3, `Euler slope ${se}`);
  t.true(sh < -1.7 && sh > -2.5, `Heun slope ${sh}`);
});

test('EDM Heun with 18 steps (35 evaluations) lands near the exact ODE solution and samples the mixture', async (t) => {
  const m = mixture2d();
  const den = exactDenoiser(m);
  let evals = 0;
  const counting = (x: Float32Array, s: number) => {
    evals++;
    return den(x, s);
  };
  const B = 2000;
  const x0 = randn(2 * B, { seed: 11, dim: 2 }).map((v) => v * 80);
  const x = await sampleHeun(counting, x0, schedules.karrasSigmas(18), { dim: 2 });
  t.is(evals, 35);
  const fine = await sampleHeun(den, x0, schedules.karrasSigmas(400), { dim: 2 });
  // Stated tolerance: mean and median |dx| below 0.05 (the mixture's components have
  // standard deviation 0.3; a few paths near the boundary between modes may change mode).
  const dev = Float64Array.from(x, (v, i) => Math.abs(v - fine[i])).sort();
  const mean = dev.reduce((a, b) => a + b) / dev.length;
  const median = dev[dev.length >> 1];
  t.log(`18-step Heun vs 400-step Heun: mean |dx| ${mean.toExponential(2)}, median ${median.toExponential(2)}, worst ${dev[dev.length - 1].toExponential(2)}`);
  t.true(mean < 0.05, `mean ${mean}`);
  t.true(median < 0.05, `median ${median}`);
  const truth = sampleMixture(m, B, 12);
  for (let j = 0; j < 2; j++) {
    const a = Array.from({ length: B }, (_, i) => x[2 * i + j]);
    const b = Array.from({ length: B }, (_, i) => truth[2 * i + j]);
    const stat = ks2(a, b);
    t.log(`coordinate ${j}: two-sample KS ${stat.toFixed(4)} (0.1% critical value 0.062)`);
    t.true(stat < 0.062);
  }
});

test('stochastic samplers are seeded per sample, reproducible, and sample the mixture', async (t) => {
  const m = mixture2d();
  const den = exactDenoiser(m);
  const B = 1500;
  const x0 = randn(2 * B, { seed: 21, dim: 2 }).map((v) => v * 80);
  const sig = schedules.karrasSigmas(60);
  const a = await sampleEulerMaruyama(den, x0, sig, { dim: 2, seed: 5 });
  const b = await sampleEulerMaruyama(den, x0, sig, { dim: 2, seed: 5 });
  t.true(bitsEqual(a, b));
  const c = await sampleEulerMaruyama(den, x0.subarray(0, 20), sig, { dim: 2, seed: 5 });
  t.true(bitsEqual(c, a.subarray(0, 20)), 'sample i does not depend on the batch');
  const seeds = BigUint64Array.from({ length: B }, (_, i) => BigInt(i * 7 + 1));
  const p = await sampleEulerMaruyama(den, x0, sig, { dim: 2, seeds });
  const q = await sampleEulerMaruyama(den, x0.subarray(6, 8), sig, { dim: 2, seeds: seeds.subarray(3, 4) });
  t.true(bitsEqual(q, p.subarray(6, 8)), 'per-sample seeds follow their sample');
  const truth = sampleMixture(m, B, 22);
  t.true(ks2(Array.from({ length: B }, (_, i) => a[2 * i]), Array.from({ length: B }, (_, i) => truth[2 * i])) < 0.07);
  const churned = await sampleHeun(den, x0, schedules.karrasSigmas(30), { dim: 2, seed: 1, churn: { sChurn: 40, sTmin: 0.05, sTmax: 50, sNoise: 1.003 } });
  t.true(ks2(Array.from({ length: B }, (_, i) => churned[2 * i + 1]), Array.from({ length: B }, (_, i) => truth[2 * i + 1])) < 0.07);
  const lang = await sampleLangevin(den, x0.map((v) => v / 80), schedules.exponentialSigmas(10, { sigmaMin: 0.05, sigmaMax: 3 }), {
    dim: 2,
    seed: 2,
    stepsPerLevel: 30,
    epsilon: 2e-4,
  });
  t.true(ks2(Array.from({ length: B }, (_, i) => lang[2 * i]), Array.from({ length: B }, (_, i) => truth[2 * i])) < 0.1);
});

test('adapters: eps, v and score models of the exact denoiser sample the same path', async (t) => {
  const m = mixture2d();
  const den = exactDenoiser(m);
  const x0 = randn(2 * 32, { seed: 31, dim: 2 }).map((v) => v * 80);
  const grid = schedules.karrasSigmas(12);
  const base = await sampleHeun(den, x0, grid, { dim: 2 });
  const eps = fromEps((x, s) => x.map((v, i) => (v - den(x, s)[i]) / s));
  const vmodel = fromV((x, s) => {
    const D = den(x, s);
    return x.map((v, i) => ((v - D[i]) / s) * 1 - s * D[i]); // v = alpha eps - sigma x0, alpha = 1
  });
  const score = fromScore((x, s) => x.map((v, i) => (den(x, s)[i] - v) / s ** 2));
  for (const [name, d2] of [['eps', eps], ['v', vmodel], ['score', score]] as const) {
    const r = await sampleHeun(d2, x0, grid, { dim: 2 });
    t.true(close(r, base, 1e-3), name);
  }
});

test('sampling the 2-d toy set through a ReferenceSet; onStep, trajectory and x left unchanged', async (t) => {
  const data = sampleMixture(mixture2d(), 500, 41);
  const ref = new ReferenceSet(data, 2);
  const x0 = randn(2 * 16, { seed: 42, dim: 2 }).map((v) => v * 80);
  const copy = x0.slice();
  const steps: number[] = [];
  const trajectory: Float32Array[] = [];
  const x = await sampleHeun((x, s) => ref.estimate(x, { sigma: s, outputs: ['mean'] }).mean, x0, schedules.karrasSigmas(18), {
    dim: 2,
    onStep: (i) => steps.push(i),
    trajectory,
  });
  t.true(bitsEqual(x0, copy));
  t.deepEqual(steps, Array.from({ length: 18 }, (_, i) => i));
  t.is(trajectory.length, 19);
  // every sample ends on (or extremely near) a data point: the empirical score memorises
  for (let i = 0; i < 16; i++) {
    let best = Infinity;
    for (let j = 0; j < 500; j++) best = Math.min(best, Math.hypot(x[2 * i] - data[2 * j], x[2 * i + 1] - data[2 * j + 1]));
    t.true(best < 0.01, `sample ${i} is ${best} from the data`);
  }
});

test('bad input: grids, denoisers that misbehave, aborts', async (t) => {
  const den = exactDenoiser(mixture2d());
  const x0 = randn(8, { seed: 1, dim: 2 });
  const copy = x0.slice();
  await t.throwsAsync(sampleEuler(den, x0, [1, 2, 0]), { code: 'ERR_SCOREFIELD_RANGE', message: /decreasing/ });
  await t.throwsAsync(sampleEuler(den, x0, [1, 1, 0]), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(sampleEuler(den, x0, [1, -0.5]), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(sampleEuler(den, x0, [Number.NaN, 0]), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(sampleEuler(den, x0, [1]), { code: 'ERR_SCOREFIELD_SHAPE' });
  await t.throwsAsync(sampleEuler(den, x0, 'abc' as unknown as number[]), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(sampleEuler(42 as unknown as typeof den, x0, [1, 0]), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(sampleHeun(() => new Float32Array(3), x0, [1, 0.5, 0]), { instanceOf: ScorefieldDenoiserError, code: 'ERR_SCOREFIELD_DENOISER' });
  // a denoiser returning NaN or Infinity is refused at the evaluation that returned it
  for (const bad of [Number.NaN, Infinity, -Infinity]) {
    let evals = 0;
    const e = await t.throwsAsync(
      sampleHeun((x, s) => {
        const r = den(x, s);
        if (++evals === 3) r[5] = bad;
        return r;
      }, x0, schedules.karrasSigmas(6), { dim: 2 }),
      { code: 'ERR_SCOREFIELD_DENOISER', message: new RegExp(`finite values .* received ${bad} at index 5`) },
    );
    t.truthy(e);
    t.is(evals, 3);
  }
  const boom = new Error('model exploded');
  const e1 = await t.throwsAsync(sampleHeun(() => { throw boom; }, x0, [1, 0]), { instanceOf: ScorefieldDenoiserError });
  t.is(e1?.cause, boom);
  const e2 = await t.throwsAsync(sampleHeun(() => Promise.reject(boom), x0, [1, 0]), { instanceOf: ScorefieldDenoiserError });
  t.is(e2?.cause, boom);
  const ac = new AbortController();
  ac.abort();
  const e3 = await t.throwsAsync(sampleHeun(den, x0, [1, 0.5, 0], { signal: ac.signal }), { instanceOf: ScorefieldAbortError });
  t.is(e3?.name, 'AbortError');
  // Abort between steps: the denoiser of step 2 aborts; the sampler stops before step 3.
  const ac2 = new AbortController();
  let calls = 0;
  await t.throwsAsync(
    sampleEuler((x, s) => {
      if (++calls === 2) ac2.abort(new Error('user stop'));
      return den(x, s);
    }, x0, schedules.karrasSigmas(10), { signal: ac2.signal, dim: 2 }),
    { code: 'ERR_SCOREFIELD_ABORTED' },
  );
  t.is(calls, 2);
  t.true(bitsEqual(x0, copy), 'x unchanged');
  t.throws(() => eulerStep(x0, x0, -1, 0), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => eulerMaruyamaStep(x0, x0.slice(), 1, 0.5, { out: x0 }), { code: 'ERR_SCOREFIELD_ALIAS' });
});

test('ReferenceSet.sample runs natively and matches the JS-driven loop; prior, nfe, progress', async (t) => {
  const data = sampleMixture(mixture2d(), 800, 51);
  const ref = new ReferenceSet(data, 2);
  const sigmas = schedules.karrasSigmas(18);
  const B = 40;
  const x0 = randn(2 * B, { seed: 52, dim: 2 }).map((v) => v * 80);
  const den = (x: Float32Array, s: number) => ref.estimate(x, { sigma: s, outputs: ['mean'] }).mean;
  for (const solver of ['heun', 'euler'] as const) {
    for (const churn of [undefined, { sChurn: 20, sTmin: 0.05, sTmax: 30, sNoise: 1.003 }]) {
      const js = await (solver === 'heun' ? sampleHeun : sampleEuler)(den, x0, sigmas, { dim: 2, seed: 7, churn });
      const progress: number[] = [];
      const nat = await ref.sample({ sigmas, solver, x: x0, seed: 7, churn, onProgress: (i) => progress.push(i) });
      await new Promise((r) => setImmediate(r));
      t.is(nat.nfe, solver === 'heun' ? 35 : 18);
      t.deepEqual(progress, Array.from({ length: 18 }, (_, i) => i + 1));
      let worst = 0;
      for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(js[i] - nat.x[i]));
      t.true(worst <= 1e-5, `${solver} churn=${!!churn}: ${worst}`);
    }
  }
  // Without x the prior is sigmas[0] times the seeded noise of stream 0.
  const { x } = await ref.sample({ sigmas: [80, 40], solver: 'euler', batch: 3, seed: 9 });
  const prior = randn(6, { seed: 9, dim: 2 }).map((v) => v * 80);
  const step = await sampleEuler(den, prior, [80, 40], { dim: 2 });
  t.true(bitsEqual(x, step));
});

test('ReferenceSet.sample: abort between evaluations, bad options', async (t) => {
  const data = sampleMixture(mixture2d(), 3000, 61);
  const ref = new ReferenceSet(data, 2);
  const ac = new AbortController();
  const err = await t.throwsAsync(
    ref.sample({ sigmas: schedules.karrasSigmas(200), batch: 2000, seed: 1, signal: ac.signal, onProgress: (i) => i === 2 && ac.abort() }),
    { instanceOf: ScorefieldAbortError },
  );
  t.is(err?.code, 'ERR_SCOREFIELD_ABORTED');
  // An abort from onProgress after the native loop has finished (2 evaluations, so the loop is
  // done long before the queued progress call runs) still rejects: the promise had not settled.
  const late = new AbortController();
  await t.throwsAsync(
    ref.sample({ sigmas: [1, 0.5, 0], solver: 'euler', batch: 4, seed: 1, signal: late.signal, onProgress: (i) => i === 2 && late.abort() }),
    { instanceOf: ScorefieldAbortError },
  );
  // The native loop checks its abort flag before every evaluation (raw binding: x is written in
  // place there). A flag raised before the call: rejected with x untouched. A flag raised right
  // after the call started: x is left short of the finished run's result (59 evaluations).
  const { native } = await import('../lib/native');
  const n = native();
  const sigmas = Float64Array.from(schedules.karrasSigmas(30));
  const prior = randn(2 * 2000, { seed: 62, dim: 2 }).map((v) => v * 80);
  const raw = (x: Float32Array, token: ReturnType<typeof n.newAbortToken>) =>
    n.sample({ ref: ref.handle, x, batch: 2000, sigmas, heun: true, kernel: 0, sChurn: 0, sTmin: 0, sTmax: 1e300, sNoise: 1, seed: 0n, seeds: null, offset: 0, onProgress: null, abortToken: token });
  const full = prior.slice();
  await raw(full, n.newAbortToken());
  const before = n.newAbortToken();
  n.abortToken(before);
  const untouched = prior.slice();
  await t.throwsAsync(async () => raw(untouched, before), { code: 'ERR_SCOREFIELD_ABORTED' });
  t.true(bitsEqual(untouched, prior), 'a step ran after the abort');
  const after = n.newAbortToken();
  const cut = prior.slice();
  const started = raw(cut, after);
  n.abortToken(after);
  await t.throwsAsync(async () => started, { code: 'ERR_SCOREFIELD_ABORTED' });
  t.false(bitsEqual(cut, full), 'the native loop ran to the end');
  const pre = new AbortController();
  pre.abort();
  await t.throwsAsync(ref.sample({ sigmas: [1, 0], signal: pre.signal }), { name: 'AbortError' });
  await t.throwsAsync(ref.sample({ sigmas: [1, 2] }), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(ref.sample({ sigmas: [1, 0], solver: 'rk4' as 'euler' }), { code: 'ERR_SCOREFIELD_TYPE' });
  await t.throwsAsync(ref.sample({ sigmas: [1, 0], x: new Float32Array(3) }), { code: 'ERR_SCOREFIELD_SHAPE' });
  await t.throwsAsync(ref.sample({ sigmas: [1, 0], x: new Float32Array(4), batch: 3 }), { code: 'ERR_SCOREFIELD_SHAPE' });
});

test('VP models run through the scaled variables: fromSchedule equals the VE denoiser; VP-uniform-t grid', async (t) => {
  const m = mixture2d();
  const den = exactDenoiser(m);
  const vp = schedules.vp();
  // the schedule's inverse: t(s) recovers t
  for (const tt of [0.01, 0.3, 0.9]) t.true(Math.abs(vp.tOfScaledSigma(vp.scaledSigma(tt)) - tt) < 1e-9);
  const grid = schedules.vpUniformSigmas(30, { tMin: 1e-3 });
  t.is(grid.length, 31);
  t.is(grid[30], 0);
  t.true(Math.abs(grid[0] - vp.scaledSigma(1)) < 1e-12 && Math.abs(grid[29] - vp.scaledSigma(1e-3)) < 1e-12);
  // An eps model in VP variables: x_t = alpha x0 + sigma eps.
  const epsModel = (xt: Float32Array, tt: number) => {
    const al = vp.alpha(tt);
    const s = vp.sigma(tt) / al;
    const xs = xt.map((v) => v / al);
    const D = den(xs, s);
    return xs.map((v, i) => (v - D[i]) / s);
  };
  const x0 = randn(2 * 64, { seed: 71, dim: 2 }).map((v) => v * grid[0]);
  const viaVp = await sampleHeun(fromSchedule(vp, epsModel, 'eps'), x0, grid, { dim: 2 });
  const direct = await sampleHeun(den, x0, grid, { dim: 2 });
  t.true(close(viaVp, direct, 1e-4));
});

test('ReferenceSet.sample resolves only after every onProgress call has arrived', async (t) => {
  const ref = new ReferenceSet(sampleMixture(mixture2d(), 300, 61), 2);
  const sigmas = schedules.karrasSigmas(6);
  let late = 0;
  for (let run = 0; run < 200; run++) {
    const seen: number[] = [];
    const r = await ref.sample({ sigmas, solver: 'euler', batch: 4, seed: run, onProgress: (i) => seen.push(i) });
    if (seen.length !== 6) late++;
    t.is(r.nfe, 6);
  }
  t.is(late, 0, 'runs that resolved before their last progress call');
});

test('step kernels have async forms (defined once with the sync ones): same bits, off the main thread', async (t) => {
  const B = 64, d = 32;
  const x = randn(B * d, { seed: 91, dim: d }), D = randn(B * d, { seed: 92, dim: d });
  const xn = randn(B * d, { seed: 93, dim: d }), Dn = randn(B * d, { seed: 94, dim: d });
  const sig = new Float32Array(B).map((_, i) => 0.5 + i / B);
  t.true(bitsEqual(await eulerStepAsync(x, D, sig, 0.3, { dim: d }), eulerStep(x, D, sig, 0.3, { dim: d })));
  t.true(bitsEqual(await heunStepAsync(x, D, xn, Dn, 2, 1, { dim: d }), heunStep(x, D, xn, Dn, 2, 1, { dim: d })));
  const noise = { seed: 5 };
  t.true(bitsEqual(await eulerMaruyamaStepAsync(x, D, 2, 1, { dim: d, noise }), eulerMaruyamaStep(x, D, 2, 1, { dim: d, noise })));
  t.true(bitsEqual(await langevinStepAsync(x, D, 1, 0.01, { dim: d, noise }), langevinStep(x, D, 1, 0.01, { dim: d, noise })));
  t.true(bitsEqual(await churnStepAsync(x, 1, 1.5, { dim: d, noise, sNoise: 1.003 }), churnStep(x, 1, 1.5, { dim: d, noise, sNoise: 1.003 })));
  // the same validation
  await t.throwsAsync(eulerStepAsync(x, D, -1, 0), { code: 'ERR_SCOREFIELD_RANGE' });
  await t.throwsAsync(eulerMaruyamaStepAsync(x, D.slice(), 1, 0.5, { out: x }), { code: 'ERR_SCOREFIELD_ALIAS' });
  // an output transferred mid-call gets nothing written and a coded rejection
  const out = new Float32Array(B * d);
  const p = eulerStepAsync(x, D, 1, 0.5, { out });
  structuredClone(out.buffer, { transfer: [out.buffer as ArrayBuffer] });
  await t.throwsAsync(p, { code: 'ERR_SCOREFIELD_DETACHED' });
});

test("ReferenceSet.sample with kernel 'gaussian' (the name) draws the same Gaussian prior as the default", async (t) => {
  const ref = new ReferenceSet(sampleMixture(mixture2d(), 300, 71), 2);
  const sigmas = schedules.karrasSigmas(5);
  const a = await ref.sample({ sigmas, batch: 6, seed: 4 });
  const b = await ref.sample({ sigmas, batch: 6, seed: 4, kernel: 'gaussian' });
  const c = await ref.sample({ sigmas, batch: 6, seed: 4, kernel: 'gaussian', offset: 3 });
  t.true(bitsEqual(a.x, b.x));
  t.is(c.x.length, 12);
});
