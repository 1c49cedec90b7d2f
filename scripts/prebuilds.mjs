// Builds the prebuilds `npm pack` ships: prebuilds/linux-x64 (this machine) and
// prebuilds/linux-arm64 (cross-compiled with Debian's aarch64 toolchain, g++-aarch64-linux-gnu),
// both N-API 8 and stripped, so that installing the tarball on either platform compiles nothing.
// prebuildify drives node-gyp in build/, so the host build is made last and build/ is left with
// it. Checks each result's architecture with `file`.
//   node scripts/prebuilds.mjs [--only x64|arm64]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const prebuildify = join(root, 'node_modules', '.bin', 'prebuildify');
// node-gyp finds the Node-API headers through npm's nodedir setting (offline): npm passes it
// to scripts; run directly, the headers beside this node are used
const nodedir = process.env.npm_config_nodedir ?? join(dirname(process.execPath), '..');
if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) throw new Error(`no Node-API headers under ${nodedir} (set npm's nodedir)`);
const run = (args, env = {}) =>
  execFileSync(prebuildify, args, { cwd: root, stdio: 'inherit', env: { ...process.env, npm_config_nodedir: nodedir, ...env } });
const targets = [
  {
    arch: 'arm64',
    args: ['--napi', '--strip', '--strip-bin', 'aarch64-linux-gnu-strip', '--arch', 'arm64'],
    env: { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++', AR: 'aarch64-linux-gnu-ar' },
    file: /ARM aarch64/,
  },
  { arch: 'x64', args: ['--napi', '--strip', '--arch', 'x64'], env: {}, file: /x86-64/ },
];
for (const t of targets) {
  if (only && only !== t.arch) continue;
  run(t.args, t.env);
  const out = join(root, 'prebuilds', `linux-${t.arch}`, 'scorefield.node');
  if (!existsSync(out)) throw new Error(`no prebuild at ${out}`);
  const what = execFileSync('file', [out], { encoding: 'utf8' });
  if (!t.file.test(what)) throw new Error(`expected a ${t.arch} binary, got: ${what}`);
  console.log(`prebuilds/linux-${t.arch}/scorefield.node: ${what.split(': ')[1].split(',').slice(0, 2).join(',')}`);
}
