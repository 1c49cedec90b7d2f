// Builds the fuzz targets of native/fuzz and runs each for a bounded time.
//   node scripts/fuzz.mjs [--seconds N]      default 20 s per target
// With clang (clang++, or clang++-14 .. -19) the targets are libFuzzer binaries with
// ASan+UBSan and coverage guidance; with only GCC they link a replay-and-mutate driver
// (native/fuzz/driver.cpp), also under ASan+UBSan. Each run first replays
// native/fuzz/regressions/<target> (inputs that once failed: regression tests) and the seed
// corpus native/fuzz/corpus/<target>; new corpus entries go to build-fuzz/corpus/<target>, so
// the checked-in corpus is not modified. Any crash, sanitizer report or leak fails the run; the
// input that caused it is left in build-fuzz/artifacts/ (copy it into regressions/ with the
// fix). Prints "N passed, N failed" (one per target).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const i = process.argv.indexOf('--seconds');
const seconds = i >= 0 ? Number(process.argv[i + 1]) : 20;
const dir = join(root, 'build-fuzz');
const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const clang = ['clang++', ...Array.from({ length: 6 }, (_, k) => `clang++-${19 - k}`)].find(has);
console.log(clang ? `fuzzing with libFuzzer (${clang})` : 'no clang found: fuzzing with the replay-and-mutate driver (GCC)');
const cc = clang ? clang.replace('clang++', 'clang') : undefined;
execFileSync('cmake', ['-S', '.', '-B', dir, '-DCMAKE_BUILD_TYPE=Debug', '-DSCOREFIELD_FUZZ=ON', ...(clang ? [`-DCMAKE_CXX_COMPILER=${clang}`, `-DCMAKE_C_COMPILER=${cc}`] : [])], { cwd: root, stdio: 'inherit' });
execFileSync('cmake', ['--build', dir, '-j', '2', '--target', 'fuzz_npy', 'fuzz_estimator', 'fuzz_steps'], { cwd: root, stdio: 'inherit' });

let passed = 0;
let failed = 0;
for (const target of ['npy', 'estimator', 'steps']) {
  const work = join(dir, 'corpus', target);
  const artifacts = join(dir, 'artifacts', target) + '/';
  mkdirSync(work, { recursive: true });
  mkdirSync(artifacts, { recursive: true });
  const seeds = join(root, 'native/fuzz/corpus', target);
  const regressions = join(root, 'native/fuzz/regressions', target);
  const bin = join(dir, `fuzz_${target}`);
  const env = { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' };
  // regressions first, each file once (libFuzzer runs the files it is given and exits)
  const files = readdirSync(regressions).filter((f) => !f.startsWith('.')).map((f) => join(regressions, f));
  let ok = true;
  if (files.length) ok = spawnSync(bin, files, { stdio: 'inherit', env }).status === 0;
  if (ok) {
    const args = clang ? [work, seeds, `-max_total_time=${seconds}`, `-artifact_prefix=${artifacts}`, '-max_len=4096', '-print_final_stats=1'] : [seeds, `-max_total_time=${seconds}`];
    ok = spawnSync(bin, args, { stdio: 'inherit', env }).status === 0;
  }
  console.log(`fuzz_${target}: ${ok ? 'ok' : 'FAILED'} (${files.length} regression inputs, ${seconds} s)`);
  if (ok) passed++;
  else failed++;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
