/**
 * NumPy .npy files: 2-d float32/float64 arrays in C order in, float32 out. The header is parsed
 * by the native core (native/core/npy.cpp, fuzzable on its own); the data conversion is here.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { ScorefieldFileError, ScorefieldShapeError } from './errors';
import * as is from './is';
import { writeAtomic } from './files';
import { callSync, native } from './native';
import * as alloc from './alloc';

const HOST_LITTLE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** A 2-d array read from a .npy file, as float32 rows. */
export interface NpyMatrix {
  /** rows x cols values, row-major. */
  data: Float32Array;
  rows: number;
  cols: number;
  /** The file's dtype ('<f4', '<f8', '>f4' or '>f8'). */
  dtype: string;
}

/**
 * Parses the bytes of a .npy file holding a 2-d float32 or float64 array in C order (either
 * byte order) into float32 rows. Anything else throws ScorefieldFileError
 * (ERR_SCOREFIELD_FORMAT) saying what the file holds instead. `name` names the source in messages.
 */
export function parse(bytes: Uint8Array, name = 'the .npy data'): NpyMatrix {
  if (!(bytes instanceof Uint8Array)) throw is.typeError('a Uint8Array', 'bytes', bytes);
  const h = callSync(() => native().parseNpyHeader(bytes));
  const where = ` in ${name}`;
  if (h.kind !== 'f' || (h.itemSize !== 4 && h.itemSize !== 8)) {
    const what = h.kind === 'f' && h.itemSize === 2 ? 'float16' : `dtype '${h.descr}'`;
    throw new ScorefieldFileError(`Expected a float32 or float64 array${where} but received ${what}`);
  }
  if (h.fortranOrder) throw new ScorefieldFileError(`Expected C order${where} but received a Fortran-order array`);
  if (h.shape.length !== 2) {
    throw new ScorefieldFileError(`Expected a 2-d array (rows x dims)${where} but received shape (${h.shape.join(', ')})`);
  }
  const [rows, cols] = h.shape;
  if (rows === 0 || cols === 0) throw new ScorefieldFileError(`Expected a non-empty array${where} but received shape (${rows}, ${cols})`);
  if (h.dataBytes > bytes.length - h.dataOffset) {
    throw new ScorefieldFileError(`Expected ${h.dataBytes} bytes of data${where} but received ${bytes.length - h.dataOffset} (truncated file)`);
  }
  const n = rows * cols;
  if (!Number.isSafeInteger(n) || n > 2 ** 32) {
    throw new ScorefieldShapeError(`Expected at most 2^32 elements${where} but received ${rows} x ${cols}`);
  }
  const data = toFloat32(bytes.subarray(h.dataOffset, h.dataOffset + n * h.itemSize), n, h.itemSize, h.byteOrder !== '>', 'the array read');
  return { data, rows, cols, dtype: h.descr };
}

/** n float32 or float64 values of either byte order, as a new Float32Array. */
function toFloat32(bytes: Uint8Array, n: number, itemSize: number, little: boolean, what: string): Float32Array {
  const data = alloc.f32(n, what);
  if (itemSize === 4 && little && HOST_LITTLE && bytes.byteOffset % 4 === 0) {
    data.set(new Float32Array(bytes.buffer, bytes.byteOffset, n)); // the common case: a plain copy
    return data;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (itemSize === 4) for (let i = 0; i < n; i++) data[i] = view.getFloat32(4 * i, little);
  else for (let i = 0; i < n; i++) data[i] = view.getFloat64(8 * i, little);
  return data;
}

/** Reads a .npy file (see {@link parse}); a missing or unreadable file throws ERR_SCOREFIELD_FILE. */
export function read(path: string): NpyMatrix {
  if (typeof path !== 'string') throw is.typeError('a file path string', 'path', path);
  let bytes: Buffer;
  try {
    // a regular file only: /dev/zero or a FIFO would be read without end (or block)
    const st = statSync(path);
    if (!st.isFile()) {
      const what = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a device' : 'not a regular file';
      throw new ScorefieldFileError(`Expected a regular .npy file for ${path} but received ${what}`, 'ERR_SCOREFIELD_FILE');
    }
    bytes = readFileSync(path);
  } catch (err) {
    if (err instanceof ScorefieldFileError) throw err;
    const code = (err as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory' : String((err as Error).message);
    throw new ScorefieldFileError(`Expected a readable .npy file for ${path} but received ${why}`, 'ERR_SCOREFIELD_FILE', { cause: err });
  }
  return parse(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), path);
}

/**
 * Reads rows [begin, end) of a 2-d .npy file without reading the rest (a shard of a file larger
 * than memory); the header is checked as {@link parse} does. `end` defaults to the last row.
 */
export function readRows(path: string, begin = 0, end?: number): NpyMatrix & { totalRows: number } {
  if (typeof path !== 'string') throw is.typeError('a file path string', 'path', path);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : String((err as Error).message);
    throw new ScorefieldFileError(`Expected a readable .npy file for ${path} but received ${why}`, 'ERR_SCOREFIELD_FILE', { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ScorefieldFileError(`Expected a regular .npy file for ${path} but received not a regular file`, 'ERR_SCOREFIELD_FILE');
    const head = Buffer.alloc(Math.min(st.size, 65536 + 16));
    readSync(fd, head, 0, head.length, 0);
    const h = callSync(() => native().parseNpyHeader(new Uint8Array(head.buffer, head.byteOffset, head.length)));
    if (h.kind !== 'f' || (h.itemSize !== 4 && h.itemSize !== 8) || h.fortranOrder || h.shape.length !== 2) {
      // the whole-file parser says precisely what is wrong
      parse(new Uint8Array(head.buffer, head.byteOffset, head.length), path);
    }
    const [rows, cols] = h.shape;
    const e = end ?? rows;
    is.integer(begin, 'begin', 0, rows);
    is.integer(e, 'end', begin + 1, rows);
    if (h.dataBytes > st.size - h.dataOffset) {
      throw new ScorefieldFileError(`Expected ${h.dataBytes} bytes of data in ${path} but received ${st.size - h.dataOffset} (truncated file)`);
    }
    const n = (e - begin) * cols;
    const bytes = Buffer.alloc(n * h.itemSize);
    let got = 0;
    while (got < bytes.length) {
      const r = readSync(fd, bytes, got, bytes.length - got, h.dataOffset + begin * cols * h.itemSize + got);
      if (r === 0) throw new ScorefieldFileError(`Expected ${bytes.length} bytes of rows ${begin}:${e} in ${path} but the file ended`);
      got += r;
    }
    const data = toFloat32(bytes, n, h.itemSize, h.byteOrder !== '>', 'the rows read');
    return { data, rows: e - begin, cols, dtype: h.descr, totalRows: rows };
  } finally {
    closeSync(fd);
  }
}

/**
 * Encodes a rows x cols float32 array as .npy (format 1.0, '<f4', C order), readable by
 * `numpy.load`.
 */
export function encode(data: Float32Array, rows: number, cols: number): Uint8Array {
  is.f32(data, 'data');
  is.integer(rows, 'rows', 0);
  is.integer(cols, 'cols', 0);
  if (rows * cols !== data.length) {
    throw new ScorefieldShapeError(`Expected rows x cols = ${rows * cols} elements for data but received ${data.length}`);
  }
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  // pad with spaces so the data starts at a multiple of 64 bytes, ending with a newline
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header += ' '.repeat(total - 10 - header.length - 1) + '\n';
  const out = new Uint8Array(total + 4 * data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, total);
  for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i], true);
  return out;
}

/**
 * Writes a .npy file atomically: to a temporary name first, renamed into place, so an
 * interrupted write never leaves a half-written file at `path`.
 */
export function write(path: string, data: Float32Array, rows: number, cols: number): void {
  writeAtomic(path, encode(data, rows, cols));
}
