/** Writing files so that an interrupted write never leaves a half-written file in place. */
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { ScorefieldFileError } from './errors';

/** Writes bytes to a temporary file next to `path` and renames it into place. */
export function writeAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    throw new ScorefieldFileError(`Expected a writable path for ${path} but received ${(err as Error).message}`, 'ERR_SCOREFIELD_FILE', { cause: err });
  }
}
