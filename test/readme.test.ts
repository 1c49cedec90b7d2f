// The README's TypeScript examples run as written (importing 'scorefield' resolves to this
// package's built entry point).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { startRedis } from './helpers/redis';

const root = path.join(__dirname, '..');
const blocks = [...readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)]
  .map((m) => m[1])
  .filter((code) => code.includes("from 'scorefield'") || code.includes("from 'scorefield/distributed'"))
  // the ONNX example loads a model file of the reader's; the same code runs as
  // examples/onnx-sampling.ts in test/onnx.test.ts (it is type-checked below like every block)
  .filter((code) => !code.includes("from 'onnxruntime-node'"));

test('README examples run', async (t) => {
  t.true(blocks.length > 0);
  const dir = mkdtempSync(path.join(root, 'test', '.readme-'));
  // the distributed example needs a Redis: a real one, on a free port
  const redis = blocks.some((b) => b.includes('scorefield/distributed')) ? await startRedis() : null;
  try {
    blocks.forEach((code, i) => {
      const file = path.join(dir, `example${i}.ts`);
      writeFileSync(file, code);
      const env = redis ? { ...process.env, REDIS_URL: redis.url } : process.env;
      const out = execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: root, env }).toString();
      t.log(`example ${i}: ${out.trim()}`);
      // a console.log whose comment is only numbers claims its output: the example must print it
      const logs = code.split('\n').filter((l) => /^\s*console\.log\(/.test(l));
      const lines = out.trim().split('\n');
      logs.forEach((l, k) => {
        // (tokens are numbers, or ... for a value not claimed)
        const claim = /\/\/\s*(-?[0-9][-0-9.e ]*)$/.exec(l.trim());
        if (!claim) return;
        const want = claim[1].trim().split(/\s+/);
        const got = (lines[k] ?? '').trim().split(/\s+/);
        t.is(got.length, want.length, `example ${i}, console.log ${k}: printed ${lines[k]}, claims ${claim[1].trim()}`);
        want.forEach((w, m) => {
          if (w !== '...') t.is(got[m], w, `example ${i}, console.log ${k}: printed ${lines[k]}, claims ${claim[1].trim()}`);
        });
      });
    });
  } finally {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('README TypeScript examples type-check under strict tsc (against the built declarations)', (t) => {
  const all = [...readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const dir = mkdtempSync(path.join(root, 'test', '.readme-tsc-'));
  try {
    const files = all.map((code, i) => {
      const file = path.join(dir, `example${i}.ts`);
      // a fragment that uses names from an earlier block without importing them gets that block's imports
      writeFileSync(file, (code.includes('import ') ? '' : importsFor(code)) + code + '\nexport {};\n');
      return file;
    });
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true, noEmit: true, target: 'ES2022', module: 'commonjs', moduleResolution: 'node10', lib: ['ES2022', 'DOM'], types: ['node'], skipLibCheck: false, esModuleInterop: true,
          baseUrl: root,
          typeRoots: [path.join(root, 'node_modules/@types')],
          paths: { scorefield: ['dist/cjs/index.d.ts'], 'scorefield/distributed': ['dist/cjs/distributed/index.d.ts'] },
        },
        files,
      }),
    );
    let out = '';
    try {
      execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.json')], { cwd: root, encoding: 'utf8' });
    } catch (err) {
      out = String((err as { stdout?: string }).stdout ?? err);
    }
    t.is(out, '', out);
    t.true(files.length >= 10);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The scorefield names a fragment uses, imported (fragments continue an earlier example). */
function importsFor(code: string): string {
  const names = ['schedules', 'ReferenceSet', 'sampleHeun', 'sampleEuler', 'randn', 'datasets', 'npy', 'objectives'].filter((n) => new RegExp(`\\b${n}\\b`).test(code));
  return names.length ? `import { ${names.join(', ')} } from 'scorefield';\n` : '';
}
