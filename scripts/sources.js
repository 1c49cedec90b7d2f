// Prints one group of native/sources.json, space separated (used by binding.gyp).
const path = require('node:path');
const groups = require(path.join(__dirname, '..', 'native', 'sources.json'));
const name = process.argv[2];
if (!Array.isArray(groups[name])) {
  console.error(`Expected a source group (core, avx2, avx512, binding) but received ${name}`);
  process.exit(1);
}
process.stdout.write(groups[name].join(' '));
