// The main job as a user runs it: `scorefield sample` with its defaults (10,000 MNIST digits,
// Gaussian kernel, Heun with 18 steps, batch 64, seed 0), as a child process of the built
// command (dist/cjs/cli/main.js), timed from spawn to exit. Target: under 10 s on the 2-core VM.
// Prints JSON lines: one per run, then the medians.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { emit, median } from './util';

const root = join(__dirname, '..');
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 3;
const wall: number[] = [];
const sampling: number[] = [];
for (let i = 0; i < runs; i++) {
  const out = mkdtempSync(join(tmpdir(), 'sf-bench-cli-'));
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(root, 'dist/cjs/cli/main.js'), 'sample', '--json', '--out', out], { encoding: 'utf8' });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`scorefield sample failed: ${r.stderr}`);
  const s = JSON.parse(r.stdout);
  wall.push(seconds);
  sampling.push(s.samplingSeconds);
  emit({ bench: 'cli-sample-default', run: i + 1, wallSeconds: seconds, jobSeconds: s.seconds, samplingSeconds: s.samplingSeconds, nfe: s.nfe, samplesPerSecond: s.samplesPerSecond, nearestMean: s.nearest.mean, ess: s.essLastSteps, simd: s.simd, threads: s.threads });
}
emit({ bench: 'cli-sample-default-median', runs, wallSeconds: median(wall), samplingSeconds: median(sampling), underTenSeconds: Math.max(...wall) < 10 });
