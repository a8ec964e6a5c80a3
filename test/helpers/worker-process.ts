/**
 * A cascade worker in its own OS process, so fault tests can kill -9 it mid-batch.
 *
 * As a module: spawnWorker() starts `node --import tsx <this file> <config> <roles>`.
 * As a script: loads the config file (REDIS_URL from the environment wins, as in production),
 * calls startRuntime for the roles, prints "worker ready", and closes cleanly on SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface WorkerProcess {
  pid: number;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves when a line matching `pattern` has been written (rejects after `timeoutMs` or on exit). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** SIGKILL: no cleanup, locks left to expire. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for exit (SIGKILL after 10 s). */
  stop(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/** Spawns a worker serving `roles` with the config file `configFile`; `env` is added to this process's environment. */
export function spawnWorker(configFile: string, roles: string[], env: Record<string, string> = {}): WorkerProcess {
  return spawnScript(SELF, [configFile, roles.join(',')], env);
}

/** Spawns the TypeScript file `script` (through tsx) with `args`, as a process tests can watch and kill. */
export function spawnScript(script: string, args: string[], env: Record<string, string> = {}): WorkerProcess {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      for (const l of listeners) l();
      resolve(code);
    }),
  );
  const waitFor = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(out)) done(resolve);
        else if (exitCode !== undefined) done(() => reject(new Error(`worker exited (${exitCode}) before ${pattern}:\n${out}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out waiting for ${pattern}:\n${out}`))), timeoutMs);
      const done = (f: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      listeners.add(check);
      check();
    });
  const stop = async () => {
    if (exitCode !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const kill9 = async () => {
    if (exitCode !== undefined) return;
    child.kill('SIGKILL');
    await exited;
  };
  return { pid: child.pid!, output: () => out, waitFor, exited, kill9, stop };
}

async function main(configFile: string, roles: string): Promise<void> {
  const { loadWorkerConfig } = await import('../../config/worker-config.js');
  const { startRuntime } = await import('../../workers/cascade-runtime.js');
  const log = (msg: string) => process.stderr.write(`${msg}\n`);
  const { config } = await loadWorkerConfig({ file: configFile });
  if (!config.redisUrl) throw new Error('worker-process: no redisUrl in the config or REDIS_URL');
  const runtime = await startRuntime(config, config.redisUrl, roles.split(','), log);
  log(`worker ready: ${roles}`);
  process.once('SIGTERM', () => {
    void runtime.close().then(() => process.exit(0));
  });
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  main(process.argv[2]!, process.argv[3]!).catch((err: Error) => {
    process.stderr.write(`worker failed to start: ${err.message}\n`);
    process.exit(2);
  });
}
