// LeakSanitizer over the async paths (scripts/leak-workload.cjs), with the ASan+UBSan addon
// built by cmake-js:  npx cmake-js build --out build-cmake-asan --CDSCOREFIELD_SANITIZE=ON
//   node scripts/leak-check.mjs
// Two runs: the workload in a normal environment must leak nothing at all; with a worker
// terminated in the middle of native calls, the only allowed reports are Node-API's own
// bookkeeping for handles of the dying environment (napi_create_external wrappers and a
// promise that can no longer be settled), under 1 KB. Prints "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = (name) => spawnSync('gcc', [`-print-file-name=${name}`], { encoding: 'utf8' }).stdout.trim();
const addon = join(root, 'build-cmake-asan/Release/scorefield.node');

function run(args) {
  const dir = mkdtempSync(join(tmpdir(), 'sf-lsan-'));
  const r = spawnSync(process.execPath, ['--expose-gc', join(root, 'scripts/leak-workload.cjs'), ...args], {
    encoding: 'utf8',
    env: {
      ...process.env,
      LD_PRELOAD: `${lib('libasan.so')}:${lib('libubsan.so')}`,
      ASAN_OPTIONS: `detect_leaks=1:log_path=${join(dir, 'log')}`,
      LSAN_OPTIONS: 'exitcode=0',
      UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
      SCOREFIELD_NATIVE: addon,
    },
  });
  const logs = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
  const leaks = logs.split(/\n(?=(?:Direct|Indirect) leak)/).filter((b) => /^(Direct|Indirect) leak/.test(b));
  const bytes = leaks.reduce((a, b) => a + Number(/leak of (\d+) byte/.exec(b)?.[1] ?? 0), 0);
  return { ok: r.status === 0 && r.stdout.includes('workload done'), stderr: r.stderr, logs, leaks, bytes };
}

let passed = 0;
let failed = 0;
const check = (name, cond, detail) => {
  console.log(`${cond ? 'ok' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  if (cond) passed++;
  else failed++;
};

const normal = run(['--no-worker']);
check('async workload ran', normal.ok, normal.stderr.slice(-500));
check('no leak and no sanitizer report in a normal environment', normal.logs.trim() === '', normal.logs.slice(0, 4000));

const terminated = run([]);
check('async workload with a terminated worker ran', terminated.ok, terminated.stderr.slice(-500));
const bookkeeping = (b) => /napi_create_external|napi_create_promise/.test(b);
check(
  'a terminated worker leaves only Node-API bookkeeping, under 1 KB',
  terminated.leaks.every(bookkeeping) && terminated.bytes < 1024 && !/ERROR: AddressSanitizer|runtime error/.test(terminated.logs),
  `${terminated.leaks.length} allocations, ${terminated.bytes} bytes`,
);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
