// The published package: everything a source build and the command need is in the tarball
// (npm pack --dry-run), so `npm install scorefield` works where no prebuild matches.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..');

test('the tarball holds the build inputs, the command, the README pictures and no tests', (t) => {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files = new Set<string>((JSON.parse(out)[0].files as Array<{ path: string }>).map((f) => f.path));
  const sources = JSON.parse(readFileSync(join(root, 'native/sources.json'), 'utf8')) as Record<string, string[] | string>;
  const needed = [
    'binding.gyp',
    'CMakeLists.txt',
    'scripts/sources.js', // binding.gyp runs it to read native/sources.json
    'native/sources.json',
    ...Object.values(sources).filter(Array.isArray).flat(),
    'dist/cjs/index.js',
    'dist/esm/index.mjs',
    'dist/cjs/cli/main.js',
    'dist/cjs/distributed/index.js',
    'dist/esm/distributed.mjs',
  ];
  // every picture the README shows
  for (const m of readFileSync(join(root, 'README.md'), 'utf8').matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)) needed.push(m[1]);
  const missing = needed.filter((f) => !files.has(f));
  t.deepEqual(missing, []);
  t.false([...files].some((f) => f.startsWith('test/') || f.startsWith('build/')), 'no tests or build output');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  t.is(pkg.bin.scorefield, './dist/cjs/cli/main.js');
});

test('scorefield/distributed: a subpath of its own, the only one that loads bullmq and ioredis', (t) => {
  const run = (src: string, type = 'commonjs') =>
    execFileSync(process.execPath, ['--input-type=' + type, '-e', src], { cwd: root, encoding: 'utf8' }).trim();
  const loaded = "const ids = Object.keys(require.cache); console.log(JSON.stringify([ids.some((f) => f.includes('/node_modules/bullmq/')), ids.some((f) => f.includes('/node_modules/ioredis/'))]))";
  t.is(run(`require('scorefield'); ${loaded}`), '[false,false]');
  t.is(run(`require('scorefield/distributed'); ${loaded}`), '[true,true]');
  // ESM and CommonJS share one module instance (one error class)
  t.is(run("import * as d from 'scorefield/distributed'; import { createRequire } from 'node:module'; const c = createRequire(import.meta.url)('scorefield/distributed'); console.log(d.ShardedReferenceSet === c.ShardedReferenceSet && d.ScorefieldRemoteError === c.ScorefieldRemoteError)", 'module'), 'true');
});
