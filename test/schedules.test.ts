import test from 'ava';
import { schedules, ScorefieldRangeError, type Schedule } from '../lib/index';

const all: Array<[string, Schedule]> = [
  ['ve', schedules.ve()],
  ['edm', schedules.edm()],
  ['vp', schedules.vp()],
  ['vp-discrete', schedules.vpDiscrete()],
  ['vp-cosine', schedules.vpCosine()],
  ['linear', schedules.linear()],
];

test('derivatives agree with central finite differences', (t) => {
  for (const [name, s] of all) {
    const hi = Math.min(s.tMax, 1);
    const span = hi - s.tMin;
    for (const f of [0.13, 0.5, 0.77]) {
      let tt = s.tMin + f * span;
      if (name === 'vp-discrete') tt = Math.floor(tt * 999) / 1 + 0.5; // inside a segment
      const h = name === 'vp-discrete' ? 1e-3 : 1e-5 * Math.max(1, span);
      const fdA = (s.alpha(tt + h) - s.alpha(tt - h)) / (2 * h);
      const fdS = (s.sigma(tt + h) - s.sigma(tt - h)) / (2 * h);
      t.true(Math.abs(fdA - s.dAlpha(tt)) <= 1e-5 * (1 + Math.abs(fdA)), `${name} dAlpha at ${tt}: ${fdA} vs ${s.dAlpha(tt)}`);
      t.true(Math.abs(fdS - s.dSigma(tt)) <= 1e-5 * (1 + Math.abs(fdS)), `${name} dSigma at ${tt}: ${fdS} vs ${s.dSigma(tt)}`);
    }
  }
});

test('variance-preserving families keep alpha^2 + sigma^2 = 1', (t) => {
  for (const s of [schedules.vp(), schedules.vpDiscrete(), schedules.vpCosine()]) {
    for (let i = 0; i <= 20; i++) {
      const tt = s.tMin + (i / 20) * (s.tMax - s.tMin);
      t.true(Math.abs(s.alpha(tt) ** 2 + s.sigma(tt) ** 2 - 1) < 1e-12, `${s.name} at ${tt}`);
    }
  }
});

test('closed forms of docs/math.md at sample points', (t) => {
  const vp = schedules.vp();
  const tt = 0.3;
  const al = Math.exp(-(tt * tt * (20 - 0.1)) / 4 - (tt * 0.1) / 2);
  t.true(Math.abs(vp.alpha(tt) - al) < 1e-15);
  t.true(Math.abs(vp.sigma(tt) - Math.sqrt(1 - al * al)) < 1e-12);
  // Near t = 0 sigma stays accurate (expm1): sigma^2 ~ t * bmin.
  t.true(Math.abs(vp.sigma(1e-9) ** 2 / (1e-9 * 0.1) - 1) < 1e-6);

  const ddpm = schedules.vpDiscrete();
  let abar = 1;
  for (let k = 0; k <= 499; k++) abar *= 1 - (1e-4 + ((0.02 - 1e-4) * k) / 999);
  t.true(Math.abs(ddpm.alphasCumprod[499] - abar) < 1e-12);
  t.true(Math.abs(ddpm.alpha(499) - Math.sqrt(abar)) < 1e-12);
  t.is(ddpm.alphasCumprod.length, 1000);

  const cos = schedules.vpCosine();
  const f = (x: number) => Math.cos(((x + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  t.true(Math.abs(cos.alpha(0.4) - Math.sqrt(f(0.4) / f(0))) < 1e-14);
  t.true(Math.abs(cos.alpha(0) - 1) < 1e-15);

  const lin = schedules.linear();
  t.is(lin.alpha(0.25), 0.75);
  t.is(lin.sigma(0.25), 0.25);
  t.is(lin.scaledSigma(0.5), 1);

  const ve = schedules.ve({ sigmaMin: 0.01, sigmaMax: 50 });
  t.true(Math.abs(ve.sigma(0.5) - Math.sqrt(0.01 * 50)) < 1e-12);
  t.is(schedules.edm().sigma(3.5), 3.5);

  t.true(Math.abs(vp.logSnr(0.5) - Math.log(vp.alpha(0.5) ** 2 / vp.sigma(0.5) ** 2)) < 1e-12);
});

test('Karras grid follows the formula and ends with 0', (t) => {
  const n = 18;
  const g = schedules.karrasSigmas(n);
  t.true(g instanceof Float64Array);
  t.is(g.length, n + 1);
  t.is(g[n], 0);
  t.true(Math.abs(g[0] - 80) < 1e-12);
  t.true(Math.abs(g[n - 1] - 0.002) < 1e-15);
  const a = 80 ** (1 / 7);
  const b = 0.002 ** (1 / 7);
  for (let i = 0; i < n; i++) t.true(Math.abs(g[i] - (a + (i / (n - 1)) * (b - a)) ** 7) <= 1e-12 * g[i]);
  for (let i = 1; i <= n; i++) t.true(g[i] < g[i - 1]);
  t.is(schedules.karrasSigmas(5, { appendZero: false }).length, 5);
  const rho1 = schedules.karrasSigmas(5, { rho: 1, sigmaMin: 1, sigmaMax: 5, appendZero: false });
  t.deepEqual(Array.from(rho1, (v) => Math.round(v * 1e12) / 1e12), [5, 4, 3, 2, 1]);
});

test('exponential grid is log-uniform', (t) => {
  const g = schedules.exponentialSigmas(10, { sigmaMin: 0.01, sigmaMax: 100 });
  t.is(g.length, 11);
  t.is(g[10], 0);
  for (let i = 1; i < 10; i++) t.true(Math.abs(Math.log(g[i - 1] / g[i]) - Math.log(1e4) / 9) < 1e-12);
});

test('schedules reject t outside their domain and bad options', (t) => {
  const e = t.throws(() => schedules.vp().alpha(1.5), { instanceOf: ScorefieldRangeError });
  t.is(e?.code, 'ERR_SCOREFIELD_RANGE');
  t.regex(e!.message, /^Expected a number in \[0, 1\].* for t but received 1\.5$/);
  t.throws(() => schedules.linear().sigma(Number.NaN), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => schedules.edm().sigma('1' as unknown as number), { code: 'ERR_SCOREFIELD_TYPE' });
  t.throws(() => schedules.ve({ sigmaMin: 5, sigmaMax: 1 }), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => schedules.karrasSigmas(0), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => schedules.karrasSigmas(10, { sigmaMin: -1 }), { code: 'ERR_SCOREFIELD_RANGE' });
  t.throws(() => schedules.vpDiscrete({ betaEnd: 1.5 }), { code: 'ERR_SCOREFIELD_RANGE' });
});
