// No subnormal number is read or produced by the estimator, the steps or the native sampler
// (issue 12): the kernels flush negligible weights to exactly 0 themselves. The check reads the
// x86 MXCSR denormal-operand and underflow flags raised by every chunk of pool work, with the
// pool's flush-to-zero turned off, so it fails on any x86 CPU (AMD included, where subnormals
// are cheap and a timing test would see nothing) if a subnormal appears.
import test from 'ava';
import {
  capabilities,
  datasets,
  eulerStep,
  floatingPointStatus,
  heunStep,
  poisson,
  radial,
  randn,
  ReferenceSet,
  setFlushDenormals,
  setSimdLevel,
  type Kernel,
  type SimdLevel,
} from '../lib/index';
import { noised } from './helpers/estimator-ref';

const x86 = capabilities().arch === 'x64';
const SIGMAS = [0.002, 0.01, 0.05, 0.2, 0.5, 1, 2, 5, 20, 80];

const noisy = noised;

/** Runs fn with the pool's FTZ/DAZ off and returns the flags pool work raised. */
function flagsOf(fn: () => void): { denormal: boolean; underflow: boolean } {
  setFlushDenormals(false);
  try {
    floatingPointStatus({ reset: true });
    fn();
    const s = floatingPointStatus();
    return { denormal: s.denormal, underflow: s.underflow };
  } finally {
    setFlushDenormals(true);
  }
}

const mnist = datasets.mnist({ limit: 1600 });
const N = 1500;
const d = 784;
const train = mnist.data.slice(0, N * d);
const held = mnist.data.slice(N * d, (N + 64) * d);
const mnistRef = new ReferenceSet(train, d);
const gauss64 = randn(2000 * 64, { seed: 7 });
const gaussRef = new ReferenceSet(gauss64, 64);

const KERNELS: [string, Kernel | undefined][] = [
  ['gaussian', undefined],
  ['poisson D=1', poisson({ D: 1 })],
  ['radial tanh', radial('tanh')],
  ['radial exp', radial('exp')],
];

for (const level of capabilities().simdAvailable as SimdLevel[]) {
  test.serial(`estimator raises no denormal or underflow flag (${level}): MNIST held-out, training, jittered; d=64 Gaussian; every kernel`, (t) => {
    if (!x86) {
      t.pass('the flags are read on x86 only');
      return;
    }
    setSimdLevel(level);
    try {
      const bad: string[] = [];
      for (const [name, kernel] of KERNELS) {
        for (const sigma of SIGMAS) {
          const cases: [string, ReferenceSet, Float32Array, number][] = [
            ['held-out', mnistRef, noisy(held, sigma, 1), d],
            ['training', mnistRef, noisy(train.subarray(0, 64 * d), sigma, 2), d],
            ['jittered', mnistRef, noisy(train.subarray(0, 64 * d), sigma, 3, 1e-3), d],
            ['gauss64', gaussRef, noisy(gauss64.subarray(0, 48 * 64), sigma, 4), 64],
          ];
          for (const [what, ref, x] of cases) {
            const f = flagsOf(() => {
              ref.estimate(x, { sigma, kernel, outputs: ['mean', 'logDensity', 'ess', 'traceCov'] });
              // B = 1: the row-vectorised path and reference shards
              ref.estimate(x.subarray(0, ref.dim), { sigma, kernel, outputs: ['mean', 'ess'] });
            });
            if (f.denormal || f.underflow) bad.push(`${name} ${what} sigma=${sigma}: ${JSON.stringify(f)}`);
          }
        }
      }
      t.deepEqual(bad, []);
    } finally {
      setSimdLevel(capabilities().simdAvailable[0]);
    }
  });
}

test.serial('steps and the native sampler raise no denormal or underflow flag', async (t) => {
  if (!x86) {
    t.pass('the flags are read on x86 only');
    return;
  }
  const x = noisy(held, 1, 5);
  const den = mnistRef.estimate(x, { sigma: 1, outputs: ['mean'] }).mean;
  let f = flagsOf(() => {
    for (const [s, sn] of [[80, 40], [1, 0.5], [0.01, 0.002], [0.002, 0]]) {
      const xn = eulerStep(x, den, s, sn);
      heunStep(x, den, xn, den, s, sn === 0 ? 1e-3 : sn);
    }
  });
  t.deepEqual(f, { denormal: false, underflow: false });
  setFlushDenormals(false);
  try {
    floatingPointStatus({ reset: true });
    await mnistRef.sample({ batch: 8, seed: 3, sigmas: [80, 10, 1, 0.1, 0.01, 0.002, 0] });
    const s = floatingPointStatus();
    f = { denormal: s.denormal, underflow: s.underflow };
  } finally {
    setFlushDenormals(true);
  }
  t.deepEqual(f, { denormal: false, underflow: false });
});

test.serial('flush-to-zero never leaks into the calling thread', (t) => {
  t.true(floatingPointStatus().flushDenormals);
  // a small synchronous call runs inline on this thread, inside the pool's FTZ/DAZ scope
  const tiny = new Float64Array([Number.MIN_VALUE, 3]);
  gaussRef.estimate(gauss64.subarray(0, 64), { sigma: 0.5, outputs: ['mean'] });
  mnistRef.estimate(held.subarray(0, d), { sigma: 0.01, outputs: ['mean'] });
  // subnormal doubles still work in JavaScript afterwards (V8 uses SSE arithmetic on x86)
  t.true(tiny[0] * tiny[1] > 0);
  t.true(tiny[0] * tiny[1] / 2 > 0);
  const f32 = new Float32Array([1e-39, 0]);
  f32[1] = f32[0] * 0.5;
  t.true(f32[1] > 0);
});

test.serial('the test can fail: a subnormal in the data raises the flag without flushing', (t) => {
  if (!x86) {
    t.pass('the flags are read on x86 only');
    return;
  }
  const data = new Float32Array(64 * 32).fill(0.5);
  for (let i = 0; i < data.length; i += 3) data[i] = 1e-40; // subnormal float32 coordinates
  const ref = new ReferenceSet(data, 32);
  const f = flagsOf(() => ref.estimate(data.subarray(0, 32 * 4), { sigma: 1, outputs: ['mean'] }));
  t.true(f.denormal || f.underflow);
  // with the default FTZ/DAZ the same call reads them as zeros (DAZ suppresses the flag)
  floatingPointStatus({ reset: true });
  ref.estimate(data.subarray(0, 32 * 4), { sigma: 1, outputs: ['mean'] });
  t.false(floatingPointStatus().denormal);
});
