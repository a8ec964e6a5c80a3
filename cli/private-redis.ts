/**
 * Starts a throwaway redis-server for `cascade run` when no REDIS_URL is configured (and for the
 * integration tests): loopback only, no persistence, its own temp dir, killed with the process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CascadeError } from '../config/errors.js';

export interface PrivateRedisOptions {
  /** redis-server binary; default `redis-server` from PATH. */
  redisServer?: string;
  /** Interface to bind; default 127.0.0.1 so nothing outside this host can reach it. */
  host?: string;
  /** Port to use; default a free one (retried if another process grabs it first). */
  port?: number;
  /** How long to wait for the server to answer; default 10 s. */
  startTimeoutMs?: number;
  /** Extra redis-server arguments, appended last so they override ours. */
  extraArgs?: string[];
}

export interface PrivateRedis {
  url: string;
  host: string;
  port: number;
  pid: number;
  /** Its temporary folder (`cascade-redis-*` under the OS temp dir), removed by stop(). */
  dir: string;
  /** Shuts the server down (SIGTERM, then SIGKILL) and removes its temp dir; idempotent. */
  stop(): Promise<void>;
}

/** redis-server is not installed (or not at the given path). */
export class RedisServerNotFoundError extends CascadeError {
  override name = 'RedisServerNotFoundError';
  /** `bin` is the command that could not be run. */
  constructor(
    readonly bin: string,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot start a private Redis: "${bin}" was not found. Install Redis (e.g. \`apt-get install redis-server\` ` +
        'or `brew install redis`) or set REDIS_URL to an existing server.',
      options,
    );
  }
}

const PORT_ATTEMPTS = 5;

/** Starts a private redis-server and resolves once it answers; see PrivateRedisOptions. */
export async function startPrivateRedis(opts: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const bin = opts.redisServer ?? 'redis-server';
  const host = opts.host ?? '127.0.0.1';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-redis-'));
  try {
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort(host));
      const started = await launch(bin, host, port, dir, opts);
      if (started.ok) return started.redis;
      // The free port can be taken between probing and binding; only then is a retry useful.
      if (!started.addressInUse || opts.port !== undefined || attempt >= PORT_ATTEMPTS) throw started.error;
    }
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

type LaunchResult = { ok: true; redis: PrivateRedis } | { ok: false; error: Error; addressInUse: boolean };

async function launch(bin: string, host: string, port: number, dir: string, opts: PrivateRedisOptions): Promise<LaunchResult> {
  const args = [
    '--port',
    String(port),
    '--bind',
    host,
    // Jobs are transient: no RDB snapshots, no AOF, nothing left on disk.
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
    ...(opts.extraArgs ?? []),
  ];
  // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop the server last,
  // after the workers have drained. It then dies in every exit path of ours (stop(), or the 'exit'
  // hook below, which also covers process.exit and uncaught errors); only a SIGKILL of this
  // process leaves it running (redis-server cannot watch its parent), until killed by its pid.
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  // The pipes must be drained or a chatty server blocks on write; keep the tail for error messages.
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const exited = new Promise<{ error?: Error; code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (error) => resolve({ error, code: null, signal: null }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  const ready = waitUntilReady(host, port, child, deadline);
  let first: 'ready' | { error?: Error; code: number | null; signal: NodeJS.Signals | null };
  try {
    first = await Promise.race([ready.then(() => 'ready' as const), exited]);
  } catch (err) {
    // Timed out: the server is running but never answered; it must not outlive this call.
    child.kill('SIGKILL');
    await exited;
    return { ok: false, error: new Error(`${(err as Error).message}${output ? `:\n${output.trim()}` : ''}`), addressInUse: false };
  }

  if (first === 'ready') {
    const redis = supervise(child, exited, host, port, dir);
    return { ok: true, redis };
  }
  ready.cancel();
  if (first.error) {
    const error = (first.error as NodeJS.ErrnoException).code === 'ENOENT' ? new RedisServerNotFoundError(bin, { cause: first.error }) : first.error;
    return { ok: false, error, addressInUse: false };
  }
  const how = first.signal ? `signal ${first.signal}` : `code ${first.code}`;
  const addressInUse = /address already in use/i.test(output);
  const error = new Error(`redis-server (${bin}) exited with ${how} while starting on ${host}:${port}${output ? `:\n${output.trim()}` : ''}`);
  return { ok: false, error, addressInUse };
}

function supervise(child: ChildProcess, exited: Promise<unknown>, host: string, port: number, dir: string): PrivateRedis {
  // A crashed or exiting parent must not leave an orphan server or its folder behind.
  const killOnExit = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await fs.rm(dir, { recursive: true, force: true });
      // Only now: a process.exit during the removal still removes the folder in the hook.
      process.removeListener('exit', killOnExit);
    })());
  return { url: `redis://${host.includes(':') ? `[${host}]` : host}:${port}`, host, port, pid: child.pid!, dir, stop };
}

/** Polls until the server on host:port answers and is our child (not another process on a reused port). */
function waitUntilReady(host: string, port: number, child: ChildProcess, deadline: number): Promise<void> & { cancel(): void } {
  let cancelled = false;
  const run = async () => {
    let last: unknown;
    while (!cancelled) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${host}:${port} in time${last ? `: ${(last as Error).message}` : ''}`);
      try {
        const info = await redisCommand(host, port, ['INFO', 'server'], 1000);
        if (info.includes(`process_id:${child.pid}\r\n`)) return;
        last = new Error(`another process answers on ${host}:${port}`);
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const p = run() as Promise<void> & { cancel(): void };
  p.cancel = () => {
    cancelled = true;
  };
  // The race in launch() may settle on the exit first; this rejection then has no reader.
  p.catch(() => undefined);
  return p;
}

/** Sends one command over a fresh connection and returns a simple or bulk string reply. */
function redisCommand(host: string, port: number, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, value?: string) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    socket.setTimeout(timeoutMs, () => done(new Error('timed out')));
    socket.on('error', (err) => done(err));
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.subarray(0, eol).toString('utf8');
      if (head.startsWith('+')) return done(null, head.slice(1));
      if (head.startsWith('-')) return done(new Error(head.slice(1)));
      if (head.startsWith('$')) {
        const len = Number(head.slice(1));
        if (buf.length >= eol + 2 + len) done(null, buf.subarray(eol + 2, eol + 2 + len).toString('utf8'));
        return;
      }
      done(new Error(`unexpected reply ${JSON.stringify(head)}`));
    });
  });
}

/** Asks the OS for a currently free TCP port on `host`. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
