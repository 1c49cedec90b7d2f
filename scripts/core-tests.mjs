// Builds and runs the native core's own tests (plain CMake, no Node-API).
//   node scripts/core-tests.mjs            optimised build in build-core/
//   node scripts/core-tests.mjs --asan     ASan+UBSan build in build-asan/
//   node scripts/core-tests.mjs --arm64    cross-compiled for linux-arm64 (Debian's aarch64
//                                          toolchain) in build-arm64/, run under qemu-user:
//                                          the NEON kernels and the scalar ones
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asan = process.argv.includes('--asan');
const arm64 = process.argv.includes('--arm64');
const dir = join(root, asan ? 'build-asan' : arm64 ? 'build-arm64' : 'build-core');
const run = (cmd, args, env = process.env) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit', env });
const cross = arm64
  ? ['-DCMAKE_SYSTEM_NAME=Linux', '-DCMAKE_SYSTEM_PROCESSOR=aarch64', '-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc', '-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++']
  : [];
run('cmake', ['-S', '.', '-B', dir, `-DCMAKE_BUILD_TYPE=${asan ? 'Debug' : 'Release'}`, `-DSCOREFIELD_SANITIZE=${asan ? 'ON' : 'OFF'}`, ...cross]);
run('cmake', ['--build', dir, '-j', '2']);
const tests = join(dir, 'scorefield_core_tests');
run(arm64 ? 'qemu-aarch64' : tests, arm64 ? ['-L', '/usr/aarch64-linux-gnu', tests] : [], {
  ...process.env,
  ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
});
