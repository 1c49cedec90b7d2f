// The async paths, exercised for a leak check (scripts/leak-check.mjs): every async entry
// point, rejected and aborted calls, progress callbacks, a worker terminated mid-call.
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const sf = require(path.join(__dirname, '..', 'dist', 'cjs', 'index.js'));

async function main() {
  const d = 16;
  const ref = await sf.ReferenceSet.createAsync(sf.randn(500 * d, { seed: 1, dim: d }), d);
  const x = sf.randn(32 * d, { seed: 2, dim: d });
  for (let i = 0; i < 20; i++) {
    await ref.estimateAsync(x, { sigma: 0.5, outputs: ['mean', 'score', 'logDensity', 'ess', 'traceCov', 'divergence'] });
    await ref.estimateAsync(x, { sigma: 0.5, kernel: sf.poisson({ D: 4 }), outputs: ['mean', 'ess'] });
    await ref.estimatePartialAsync(x, { sigma: 0.5, start: 0, end: 250 });
    await sf.perturbAsync(x, x, 0.5, 2);
    await sf.dsmLossAsync(x, x, { dim: d });
    await sf.randnAsync(1000, { seed: i });
    await sf.stableTargetsAsync(x, x, ref, { sigma: 0.3 });
  }
  await ref.sample({ sigmas: sf.schedules.karrasSigmas(8), batch: 16, seed: 1, onProgress: () => {} });
  // rejected and aborted calls
  await ref.estimateAsync(x, { sigma: 0.5, out: { mean: new Float32Array(3) } }).catch(() => {});
  sf.setMemoryLimit(1000);
  await ref.estimateAsync(x, { sigma: 0.5 }).catch(() => {});
  sf.setMemoryLimit(null);
  const c = new AbortController();
  const p = ref.sample({ sigmas: sf.schedules.karrasSigmas(200), batch: 64, seed: 1, signal: c.signal, onProgress: () => {} });
  setTimeout(() => c.abort(), 50);
  await p.catch(() => {});
  const moved = new Float32Array(32 * d);
  const q = ref.estimateAsync(x, { sigma: 0.5, outputs: ['mean'], out: { mean: moved } });
  structuredClone(moved.buffer, { transfer: [moved.buffer] });
  await q.catch(() => {});
  await sf.objectives.evaluate((v) => v.map((t) => -t), ref, { sigma: 0.5, samples: 300 });
  if (process.argv.includes('--no-worker')) {
    console.log('workload done');
    return;
  }
  // a worker terminated while its calls run
  const w = new Worker(`
    const sf = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'cjs', 'index.js'))});
    const ref = new sf.ReferenceSet(sf.randn(2000 * 32, { seed: 3, dim: 32 }), 32);
    for (let i = 0; i < 4; i++) ref.estimateAsync(sf.randn(64 * 32, { seed: i, dim: 32 }), { sigma: 1 });
    ref.sample({ sigmas: sf.schedules.karrasSigmas(10), batch: 16, seed: 1, onProgress: () => {} });
    require('node:worker_threads').parentPort.postMessage('go');
  `, { eval: true });
  await new Promise((r) => w.once('message', r));
  await w.terminate();
  console.log('workload done');
}
main()
  .then(async () => {
    // everything above is unreachable now: collect it, so that finalizers of native handles
    // run before the leak check at exit (run with --expose-gc)
    for (let i = 0; i < 4; i++) {
      global.gc?.();
      await new Promise((r) => setImmediate(r));
    }
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
