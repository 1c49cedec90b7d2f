// Two builds of the addon against each other on the real MNIST digits, process-alternated: the
// method behind every "measured against the previous release" figure in docs/numerics.md.
//
//   npm run bench:compare -- <addonA.node> <addonB.node> [--rounds 4] [--reps 21]
//                            [--sigmas 0.01,1] [--kinds held,train,jitter] [--b 256] [--pruning on|off]
//
// Keep a copy of the old build first (cp build/Release/scorefield.node /tmp/old.node), rebuild,
// then compare /tmp/old.node with build/Release/scorefield.node. Both files are loaded the way
// SCOREFIELD_NATIVE loads them, each in its own child process (one addon per process); a round
// runs every (sigma, queries) cell once per build, A then B on even rounds and B then A on odd
// ones, so neither build always runs first after the other's turn. A child times `reps` calls
// of `estimateWithStats(x, { sigma, outputs: ['score'] })` after three untimed ones and reports
// their median and 10th percentile. The summary lines give, per cell, the median over rounds of
// each build's medians, the median of the per-round ratios B / A (below 1: B is faster) and
// whether the two builds wrote the same score bits (a hash of the output).
//
// Queries: held-out digits (the last 1,000 of the 10,000; the set is the first 9,000), training
// digits spread over the set, or training digits with a 1e-3 jitter, each noised at sigma
// (the sweep's query sets, bench/sweep.ts), B of them.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { emit, flag, median, spreadRows } from './util';

type Kind = 'held' | 'train' | 'jitter';

interface ChildResult {
  med: number;
  p10: number;
  hash: string;
  exactPairs: number;
  sparseQueries: number;
}

async function child(): Promise<void> {
  // loaded here, after SCOREFIELD_NATIVE is set by the parent
  const { datasets, ReferenceSet, setPruning } = await import('../lib/index');
  const { noised } = await import('../test/helpers/estimator-ref');
  const kind = flag('kind', 'held') as Kind;
  const sigma = Number(flag('sigma', '0.01'));
  const B = Number(flag('b', '256'));
  const reps = Number(flag('reps', '21'));
  const d = 784;
  const N = 9000;
  const m = datasets.mnist();
  const ref = new ReferenceSet(m.data.slice(0, N * d), d);
  const base = kind === 'held' ? m.data.subarray(N * d, (N + B) * d) : spreadRows(m.data, N, d, B);
  const x = noised(base, sigma, 1, kind === 'jitter' ? 1e-3 : 0);
  setPruning(flag('pruning', 'on') === 'on');
  const score = new Float32Array(x.length);
  const call = () => ref.estimateWithStats(x, { sigma, outputs: ['score'], out: { score } });
  let st = call();
  for (let i = 0; i < 2; i++) st = call();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    st = call();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  const hash = createHash('sha256').update(Buffer.from(score.buffer, score.byteOffset, score.byteLength)).digest('hex').slice(0, 16);
  const out: ChildResult = { med: median(ts), p10: ts[Math.floor(reps / 10)], hash, exactPairs: st.exactPairs, sparseQueries: st.sparseQueries };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function parent(): void {
  const files = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(all[i - 1] ?? '').startsWith('--'));
  if (files.length !== 2) {
    throw new Error(`Expected two addon files (npm run bench:compare -- <a.node> <b.node>) but received ${files.length}`);
  }
  const [a, b] = files;
  const rounds = Number(flag('rounds', '4'));
  const sigmas = flag('sigmas', '0.01,1').split(',').map(Number);
  const kinds = flag('kinds', 'held').split(',') as Kind[];
  const pass = ['--b', flag('b', '256'), '--reps', flag('reps', '21'), '--pruning', flag('pruning', 'on')];
  const cells = new Map<string, { a: ChildResult[]; b: ChildResult[] }>();
  for (let r = 0; r < rounds; r++) {
    for (const sigma of sigmas) {
      for (const kind of kinds) {
        const key = `${kind} ${sigma}`;
        const cell = cells.get(key) ?? { a: [], b: [] };
        cells.set(key, cell);
        for (const which of r % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
          const file = which === 'a' ? a : b;
          const text = execFileSync(process.execPath, ['--import', 'tsx', __filename, '--child', '--kind', kind, '--sigma', String(sigma), ...pass], {
            env: { ...process.env, SCOREFIELD_NATIVE: file },
            encoding: 'utf8',
          });
          const res = JSON.parse(text.trim().split('\n').pop() as string) as ChildResult;
          cell[which].push(res);
          emit({ bench: 'compare-run', round: r, addon: which, file, kind, sigma, ms: res.med * 1000, p10Ms: res.p10 * 1000, exactPairs: res.exactPairs, sparseQueries: res.sparseQueries });
        }
      }
    }
  }
  for (const [key, cell] of cells) {
    const [kind, sigma] = key.split(' ');
    const ratios = cell.a.map((x, i) => cell.b[i].med / x.med);
    emit({
      bench: 'compare',
      kind,
      sigma: Number(sigma),
      B: Number(flag('b', '256')),
      rounds,
      aMs: median(cell.a.map((x) => x.med)) * 1000,
      bMs: median(cell.b.map((x) => x.med)) * 1000,
      ratioBA: median(ratios),
      ratiosBA: ratios.map((v) => Number(v.toFixed(3))),
      sameBits: cell.a.every((x) => x.hash === cell.a[0].hash) && cell.b.every((x) => x.hash === cell.a[0].hash),
    });
  }
}

if (process.argv.includes('--child')) {
  child().catch((err) => {
    process.stderr.write(String(err?.stack ?? err) + '\n');
    process.exit(1);
  });
} else {
  parent();
}
