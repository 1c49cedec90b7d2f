// A real Redis (Debian's redis-server) on a free loopback port, and real `scorefield worker`
// child processes, for the distributed tests and `npm run bench:distributed`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
}

export function haveRedis(): boolean {
  try {
    require('node:child_process').execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Starts redis-server without persistence on a free port (or `port`); resolves when it accepts connections. */
export async function startRedis(port?: number, extra: string[] = []): Promise<RedisServer> {
  const p = port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'sf-redis-'));
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000);
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out}`));
    });
  });
  proc.stdout!.resume();
  proc.stderr!.resume();
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface WorkerProc {
  proc: ChildProcess;
  /** The worker's `serving` line (id, pid, begin, end, dim, hash). */
  ready: Promise<{ id: string; pid: number; begin: number; end: number; dim: number; hash: string }>;
  stderr: () => string;
  /** Resolves with the exit code or signal. */
  exited: Promise<number | string>;
}

const ROOT = path.join(__dirname, '..', '..');

/** Starts `scorefield worker` (from the sources, through tsx) as a child process. */
export function startWorker(url: string, name: string, file: string, rows: [number, number] | null, extra: string[] = [], env: NodeJS.ProcessEnv = {}): WorkerProc {
  const args = [path.join(ROOT, 'lib/cli/main.ts'), 'worker', '--redis', url, '--name', name, '--data', file, '--json', ...extra];
  if (rows) args.push('--rows', `${rows[0]}:${rows[1]}`);
  return startScript(args, env);
}

/** Runs a TypeScript script (through tsx) that prints a JSON `serving` line when it serves. */
export function startScript(args: string[], env: NodeJS.ProcessEnv = {}): WorkerProc {
  const proc = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const ready = new Promise<{ id: string; pid: number; begin: number; end: number; dim: number; hash: string }>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      try {
        const m = JSON.parse(line) as { event?: string };
        if (m.event === 'serving') resolve(m as never);
      } catch {
        // not ours
      }
    });
    exited.then((c) => reject(new Error(`worker exited (${c}) before serving: ${err}`)));
  });
  ready.catch(() => undefined);
  return { proc, ready, stderr: () => err, exited };
}
