// Builds and runs the native core's own tests (plain CMake, no Node-API).
//   node scripts/core-tests.mjs            optimised build in build-core/
//   node scripts/core-tests.mjs --asan     ASan+UBSan build in build-asan/
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asan = process.argv.includes('--asan');
const dir = join(root, asan ? 'build-asan' : 'build-core');
const run = (cmd, args, env = process.env) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit', env });
run('cmake', ['-S', '.', '-B', dir, `-DCMAKE_BUILD_TYPE=${asan ? 'Debug' : 'Release'}`, `-DSCOREFIELD_SANITIZE=${asan ? 'ON' : 'OFF'}`]);
run('cmake', ['--build', dir, '-j', '2']);
run(join(dir, 'scorefield_core_tests'), [], {
  ...process.env,
  ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
});
