// .npy reading and writing (lib/npy.ts, header parser in native/core/npy.cpp).
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { npy, ScorefieldFileError } from '../lib/index';
import { rawNpy } from './helpers/npy';
import { writeGroup } from '../lib/files';

test('encode then parse round-trips float32 rows; the header is NumPy format 1.0 aligned to 64 bytes', (t) => {
  const data = Float32Array.from({ length: 35 }, (_, i) => Math.sin(i) * 1e3);
  const bytes = npy.encode(data, 7, 5);
  t.is(bytes[6], 1);
  const headerLen = bytes[8] | (bytes[9] << 8);
  t.is((10 + headerLen) % 64, 0);
  t.is(String.fromCharCode(...bytes.subarray(10, 10 + headerLen)).trim(), "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 5), }");
  const m = npy.parse(bytes);
  t.deepEqual([m.rows, m.cols, m.dtype], [7, 5, '<f4']);
  t.deepEqual(m.data, data);
  // the same file at an odd byte offset (data not 4-byte aligned) reads the same
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  t.deepEqual(npy.parse(shifted.subarray(1)).data, data);
});

test('float64 (either byte order) converts to float32; big-endian float32 too', (t) => {
  const values = [1.5, -2.25, 1e-3, 3.141592653589793, 0, -0];
  for (const [descr, size, little] of [['<f8', 8, true], ['>f8', 8, false], ['>f4', 4, false]] as const) {
    const buf = new Uint8Array(values.length * size);
    const view = new DataView(buf.buffer);
    values.forEach((v, i) => (size === 8 ? view.setFloat64(8 * i, v, little) : view.setFloat32(4 * i, v, little)));
    const m = npy.parse(rawNpy(`{'descr': '${descr}', 'fortran_order': False, 'shape': (3, 2), }`, buf));
    t.deepEqual(Array.from(m.data), values.map((v) => Math.fround(v)), descr);
    t.is(m.dtype, descr);
  }
});

test('files: write is atomic (no temporary left behind) and read reports missing files with ERR_SCOREFIELD_FILE', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-npy-'));
  const path = join(dir, 'x.npy');
  npy.write(path, Float32Array.of(1, 2, 3, 4), 2, 2);
  t.deepEqual(readdirSync(dir), ['x.npy']);
  t.deepEqual(Array.from(npy.read(path).data), [1, 2, 3, 4]);
  const e = t.throws(() => npy.read(join(dir, 'missing.npy')), { instanceOf: ScorefieldFileError });
  t.is(e?.code, 'ERR_SCOREFIELD_FILE');
  t.regex(e!.message, /no such file/);
  const d = t.throws(() => npy.read(dir), { instanceOf: ScorefieldFileError });
  t.regex(d!.message, /directory/);
});

test('files: temporaries have unpredictable names, are created exclusively, and a group of files appears together or not at all', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-files-'));
  // a symlink planted at the name the old code used for its temporary is never followed
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'keep');
  symlinkSync(victim, join(dir, `a.npy.${process.pid}.tmp`));
  npy.write(join(dir, 'a.npy'), Float32Array.of(1, 2), 1, 2);
  t.is(readFileSync(victim, 'utf8'), 'keep');
  t.deepEqual(readdirSync(dir).sort(), ['a.npy', `a.npy.${process.pid}.tmp`, 'victim'].sort(), 'no temporary left');
  // a group whose second file cannot be written leaves neither file, nor a temporary
  const e = t.throws(() => writeGroup([[join(dir, 'one.bin'), Uint8Array.of(1)], [join(dir, 'missing', 'two.bin'), Uint8Array.of(2)]]), { instanceOf: ScorefieldFileError });
  t.is(e?.code, 'ERR_SCOREFIELD_FILE');
  t.deepEqual(readdirSync(dir).sort(), ['a.npy', `a.npy.${process.pid}.tmp`, 'victim'].sort());
  writeGroup([[join(dir, 'one.bin'), Uint8Array.of(1)], [join(dir, 'two.bin'), Uint8Array.of(2)]]);
  t.deepEqual(Array.from(readFileSync(join(dir, 'two.bin'))), [2]);
});

test('unusable arrays get ERR_SCOREFIELD_FORMAT naming what the file holds', (t) => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['3-d', rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", new Uint8Array(32)), /2-d array .* shape \(2, 2, 2\)/],
    ['1-d', rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", new Uint8Array(16)), /shape \(4\)/],
    ['float16', rawNpy("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", new Uint8Array(8)), /float16/],
    ['int32', rawNpy("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", new Uint8Array(16)), /dtype '<i4'/],
    ['fortran', rawNpy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new Uint8Array(16)), /Fortran/],
    ['truncated', rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", new Uint8Array(12)), /truncated/],
    ['empty', rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", new Uint8Array(0)), /non-empty/],
    ['structured', rawNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 2), }", new Uint8Array(16)), /structured/],
    ['not npy', new TextEncoder().encode('a,b\n1,2\n'), /magic/],
    ['trailing garbage', rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), } junk", new Uint8Array(16)), /after its closing '\}'/],
  ];
  for (const [name, bytes, message] of cases) {
    const e = t.throws(() => npy.parse(bytes, 'file.npy'), { instanceOf: ScorefieldFileError }, name);
    t.is(e?.code, 'ERR_SCOREFIELD_FORMAT', name);
    t.regex(e!.message, message, name);
  }
  const dir = mkdtempSync(join(tmpdir(), 'sf-npy-'));
  writeFileSync(join(dir, 'h.npy'), cases[2][1]);
  t.regex(t.throws(() => npy.read(join(dir, 'h.npy')))!.message, /in .*h\.npy but received float16/);
});

test('random corruptions of a header never crash: a parse or a coded error', (t) => {
  const good = npy.encode(Float32Array.of(1, 2, 3, 4, 5, 6), 2, 3);
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  let coded = 0;
  for (let it = 0; it < 3000; it++) {
    const b = good.slice(0, Math.floor(rnd() * good.length) + 1);
    for (let f = 0; f < 3; f++) b[Math.floor(rnd() * Math.min(b.length, 80))] = Math.floor(rnd() * 256);
    try {
      npy.parse(b);
    } catch (e) {
      t.true(e instanceof ScorefieldFileError || (e as { code?: string }).code?.startsWith('ERR_SCOREFIELD_'), String(e));
      coded++;
    }
  }
  t.true(coded > 2000);
});
