/** Writing files so that an interrupted write never leaves a half-written file in place. */
import { randomBytes } from 'node:crypto';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ScorefieldFileError } from './errors';

/**
 * A temporary file next to `path` with an unpredictable name, created exclusively (O_EXCL:
 * never an existing file, never through a planted symlink), holding `bytes`. Returns its name.
 */
function writeTemp(path: string, bytes: Uint8Array): string {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  try {
    writeFileSync(tmp, bytes, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    remove(tmp);
    throw new ScorefieldFileError(`Expected a writable path for ${path} but received ${(err as Error).message}`, 'ERR_SCOREFIELD_FILE', { cause: err });
  }
  return tmp;
}

function remove(tmp: string): void {
  try {
    unlinkSync(tmp);
  } catch {
    // nothing to clean up
  }
}

/** Writes bytes to a temporary file next to `path` and renames it into place. */
export function writeAtomic(path: string, bytes: Uint8Array): void {
  writeGroup([[path, bytes]]);
}

/**
 * Writes several files so that they appear together: every file is written to its temporary
 * first, and only when all are written are they renamed into place (each rename atomic). A
 * failure before the renames leaves none of them and no temporary behind.
 */
export function writeGroup(files: ReadonlyArray<readonly [string, Uint8Array]>): void {
  const temps: string[] = [];
  try {
    for (const [path, bytes] of files) temps.push(writeTemp(path, bytes));
  } catch (err) {
    temps.forEach(remove);
    throw err;
  }
  files.forEach(([path], i) => {
    try {
      renameSync(temps[i], path);
    } catch (err) {
      temps.slice(i).forEach(remove);
      throw new ScorefieldFileError(`Expected a writable path for ${path} but received ${(err as Error).message}`, 'ERR_SCOREFIELD_FILE', { cause: err });
    }
  });
}
