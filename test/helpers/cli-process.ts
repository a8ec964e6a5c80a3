/**
 * The built `cascade` CLI (bin/cascade.js → dist/; `npm test` builds first) in a child process,
 * for tests that must see what the real command prints and how it exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface CliProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the first match of `re` in the output (rejects if the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The exit code, or the signal that ended the process. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after 10 s; resolves with how it exited. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `cascade <args>` with this process's environment plus `env`. */
export function spawnCascade(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const l of [...listeners]) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let ended = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      ended = true;
      for (const l of [...listeners]) l();
      resolve({ code, signal });
    }),
  );
  const waitFor = (re: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const done = (f: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      const check = () => {
        const m = out.match(re);
        if (m) done(() => resolve(m));
        else if (ended) done(() => reject(new Error(`cascade ${args.join(' ')} exited before printing ${re}:\n${out}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out waiting for ${re} from cascade ${args.join(' ')}:\n${out}`))), timeoutMs);
      listeners.add(check);
      check();
    });
  const stop = async () => {
    if (!ended) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };
  return { child, output: () => out, waitFor, exited, stop };
}
