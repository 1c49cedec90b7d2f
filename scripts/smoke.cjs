// A smoke test of an addon build (a prebuild under qemu-user, say): loads the package with the
// addon named by SCOREFIELD_NATIVE, runs a score target, the estimator against a plain-JS
// float64 computation, a sampler run and the async path, and prints one JSON line. Exits
// non-zero on any mismatch.
//   SCOREFIELD_NATIVE=prebuilds/linux-arm64/scorefield.node qemu-aarch64 -L /usr/aarch64-linux-gnu node scripts/smoke.cjs
//   node scripts/smoke.cjs /tmp/app/node_modules/scorefield     (an installed copy of the package)
const path = require('node:path');
const sf = require(process.argv[2] ? path.resolve(process.argv[2]) : path.join(__dirname, '..', 'dist', 'cjs', 'index.js'));

function fail(msg) {
  console.error(`smoke test failed: ${msg}`);
  process.exit(1);
}

(async () => {
  const caps = sf.capabilities();
  const B = 8, d = 5, N = 300;
  const x0 = sf.randn(B * d, { seed: 1, dim: d });
  const eps = sf.randn(B * d, { seed: 2, dim: d });
  const x = sf.perturb(x0, eps, 0.8, 0.6);
  for (let i = 0; i < x.length; i++) if (Math.abs(x[i] - (0.8 * x0[i] + 0.6 * eps[i])) > 1e-6) fail(`perturb at ${i}`);
  const Y = sf.randn(N * d, { seed: 3, dim: d });
  const ref = new sf.ReferenceSet(Y, d);
  const sigma = 0.7;
  const r = await ref.estimateAsync(x, { sigma, outputs: ['mean', 'logDensity'] });
  for (let q = 0; q < B; q++) {
    let mx = -Infinity;
    const l = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      let r2 = 0;
      for (let k = 0; k < d; k++) r2 += (x[q * d + k] - Y[j * d + k]) ** 2;
      l[j] = -r2 / (2 * sigma * sigma);
      mx = Math.max(mx, l[j]);
    }
    let s = 0;
    const m = new Float64Array(d);
    for (let j = 0; j < N; j++) {
      const w = Math.exp(l[j] - mx);
      s += w;
      for (let k = 0; k < d; k++) m[k] += w * Y[j * d + k];
    }
    for (let k = 0; k < d; k++) if (Math.abs(r.mean[q * d + k] - m[k] / s) > 1e-4 * (1 + Math.abs(m[k] / s))) fail(`mean ${q},${k}`);
  }
  const s = await ref.sample({ sigmas: sf.schedules.karrasSigmas(8), batch: 4, seed: 5 });
  if (s.nfe !== 15 || !s.x.every(Number.isFinite)) fail('sample');
  console.log(JSON.stringify({ ok: true, arch: process.arch, simd: caps.simd, simdAvailable: caps.simdAvailable, threads: caps.threads }));
})().catch((e) => fail(e && e.stack ? e.stack : String(e)));
