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
  .filter((code) => code.includes("from 'scorefield'") || code.includes("from 'scorefield/distributed'"));

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
    });
  } finally {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
