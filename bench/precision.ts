// The estimator's accuracy against a float64 direct-difference reference: the README's
// precision table, measured.
//
//   npm run bench:precision        (node --import tsx bench/precision.ts)
//
// Worst relative error per query over the noise sweep, for mean, score and logDensity, on the
// best SIMD level of the machine. Prints one JSON line per row, then the table in Markdown.
// test/precision-table.test.ts runs the same measurement and checks the README's table against
// it.
import { capabilities } from '../lib/index';
import { cell, ROWS } from '../test/helpers/precision';
import { emit } from './util';

const simd = capabilities().simd;
const lines = ['| data | mean | score | logDensity |', '|---|---|---|---|'];
for (const row of ROWS) {
  const w = row.run();
  emit({ bench: 'precision', simd, data: row.label, mean: w.mean, score: w.score, logDensity: w.logDensity });
  lines.push(`| ${row.label} | ${cell(w.mean)} | ${cell(w.score)} | ${cell(w.logDensity)} |`);
}
console.log(`\n${simd}:\n${lines.join('\n')}`);
