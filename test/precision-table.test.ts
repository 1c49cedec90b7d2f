/**
 * The README's precision table is what `npm run bench:precision` measures: the same rows
 * (test/helpers/precision.ts), printed the same way. On an AVX-512 machine (where the table was
 * measured) every cell must match; elsewhere the kernels round differently, and each value must
 * still be under the 1e-4 bar.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { capabilities, setSimdLevel, type SimdLevel } from '../lib/index';
import { cell, ROWS } from './helpers/precision';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

test('the README precision table equals the measurement (npm run bench:precision)', (t) => {
  const onAvx512 = (capabilities().simdAvailable as SimdLevel[]).includes('avx512');
  if (onAvx512) setSimdLevel('avx512');
  try {
    t.true(readme.includes('npm run bench:precision'), 'the README names the command');
    for (const row of ROWS) {
      const line = readme.split('\n').find((l) => l.startsWith(`| ${row.label} |`));
      t.truthy(line, `no README row for ${row.label}`);
      const printed = line!.split('|').slice(2, 5).map((c) => c.trim());
      const w = row.run();
      const measured = [w.mean, w.score, w.logDensity];
      if (onAvx512) {
        t.deepEqual(printed, measured.map(cell), `${row.label}: README ${printed.join(', ')}, measured ${measured.map(cell).join(', ')}`);
      } else {
        for (const v of measured) t.true(v <= 1e-4, `${row.label}: ${v}`);
      }
    }
  } finally {
    setSimdLevel((capabilities().simdAvailable as SimdLevel[])[0]);
  }
});
