/**
 * Issue 11, signals and logs, on real processes (`node bin/cascade.js`, built) and real
 * redis-servers: a signal to `cascade run` drains, stops the private redis-server last and removes
 * its folder (130/143); a second signal to a worker exits 1, not a native abort (134); a TTY run
 * shows the bar and readable lines, not JSON.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../../queue/redis-connection.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { type SlowModels, writeSlowModels } from '../helpers/slow-models.js';

const execFileP = promisify(execFile);
const N = 160;
let dir: string;
let images: string;
let models: SlowModels;
let redis: TestRedis;

function modelSpec(path: string) {
  return colourSpec(path, models.labels);
}

async function writeConfig(extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ little: modelSpec(models.little), big: modelSpec(models.big), threshold: 0.9, batchSize: 4, ...extra }));
  return file;
}

interface Cli {
  child: ChildProcess;
  stderr(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

function spawnCli(args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, ['bin/cascade.js', ...args], {
    env: { ...process.env, REDIS_URL: '', CASCADE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stdout!.resume();
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString('utf8');
  });
  let signalledAt = 0;
  const kill = child.kill.bind(child);
  child.kill = (s?: NodeJS.Signals | number) => {
    signalledAt ||= Date.now();
    return kill(s);
  };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, ms: Date.now() - signalledAt })),
  );
  return {
    child,
    stderr: () => err,
    exited,
    waitFor: async (re, timeoutMs = 30_000) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = err.match(re);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before ${re}:\n${err}`);
        if (Date.now() > end) throw new Error(`no ${re} in ${timeoutMs} ms:\n${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

/** Whether `pid` runs: a zombie (killed, not yet reaped by an init that may never reap it) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-signals-'));
  images = join(dir, 'images');
  await mkdir(images);
  models = await writeSlowModels(join(dir, 'models'), { k: 512, matmuls: 6 });
  for (let i = 0; i < N; i++) {
    const v = (i * 37) % 256;
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: 255 - v, b: (v * 3) % 256 } } })
      .png()
      .toBuffer();
    await writeFile(join(images, `img-${String(i).padStart(3, '0')}.png`), png);
  }
  redis = await startRedis();
}, 60_000);

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('signals', () => {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`one ${signal} on cascade run drains, stops the private redis-server and its folder, exits ${code}`, async () => {
      const cli = spawnCli(['run', images, '--out', join(dir, `out-${signal}`), '--config', await writeConfig()], { CASCADE_LOG_FORMAT: 'json' });
      const started = await cli.waitFor(/"redisPid":(\d+),"redisDir":"([^"]+)"/);
      const [pid, redisDir] = [Number(started[1]), started[2]!];
      expect(alive(pid)).toBe(true);
      await cli.waitFor(/listed \d+ images/);
      cli.child.kill(signal);
      const exit = await cli.exited;
      console.log(`${signal}: exit ${exit.code} after ${exit.ms} ms`);
      expect(exit.code, cli.stderr()).toBe(code);
      expect(alive(pid)).toBe(false);
      expect(existsSync(redisDir)).toBe(false);
      expect(cli.stderr()).toMatch(/finishing the batches in flight/);
      expect(cli.stderr()).not.toMatch(/ECONNREFUSED|terminate called|\n\s+at /);
    }, 60_000);
  }

  it('a second signal to cascade run exits 1 at once; the private redis-server and its folder are still gone', async () => {
    const cli = spawnCli(['run', images, '--out', join(dir, 'out-twice'), '--config', await writeConfig()], { CASCADE_LOG_FORMAT: 'json' });
    const started = await cli.waitFor(/"redisPid":(\d+),"redisDir":"([^"]+)"/);
    const [pid, redisDir] = [Number(started[1]), started[2]!];
    await cli.waitFor(/listed \d+ images/);
    cli.child.kill('SIGINT');
    await cli.waitFor(/finishing the batches in flight/);
    cli.child.kill('SIGINT');
    const exit = await cli.exited;
    console.log(`second SIGINT on run: exit ${exit.code} signal ${exit.signal} after ${exit.ms} ms`);
    expect(exit.code, cli.stderr()).toBe(1);
    expect(cli.stderr()).not.toMatch(/terminate called|Napi::Error/);
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid)).toBe(false);
    expect(existsSync(redisDir)).toBe(false);
  }, 60_000);

  // The second signal lands while the worker loads its models and runs its first batches: a
  // thread stopped inside either aborted natively (134, 'terminate called … Napi::Error') until
  // exitNow waited for model loads too (test/integration/exit-now.test.ts pins the run case).
  it('a second SIGTERM to cascade worker exits 1 at once, without a native abort', async () => {
    const prefix = uniquePrefix('sig');
    // Batches of 16 on slow models: the drain lasts well past the second signal.
    const config = await writeConfig({ redisUrl: redis.url, prefix, concurrency: 4, batchSize: 16 });
    const worker = spawnCli(['worker', 'little', 'big', '--config', config], { CASCADE_LOG_FORMAT: 'json' });
    await worker.waitFor(/worker ready/);
    await execFileP(process.execPath, ['bin/cascade.js', 'submit', images, '--out', join(dir, 'out-worker'), '--config', config, '--run-id', 'sig-1'], {
      env: { ...process.env, REDIS_URL: '' },
      timeout: 30_000,
    });
    // Signal while batches are in flight: the jobs the worker took share one inference thread
    // and finish together, so neither a fixed wait nor the first counted batch leaves any to drain.
    const connection = connectRedis(redis.url);
    const queue = new Queue('stage-little', { connection, prefix });
    try {
      for (let i = 0; i < 1000 && (await queue.getActiveCount()) === 0; i++) await new Promise((r) => setTimeout(r, 5));
    } finally {
      await queue.close();
      connection.disconnect();
    }
    worker.child.kill('SIGTERM');
    await worker.waitFor(/finishing the batches in flight/);
    worker.child.kill('SIGTERM');
    const exit = await worker.exited;
    console.log(`second SIGTERM: exit ${exit.code} signal ${exit.signal} after ${exit.ms} ms`);
    expect(exit.code, worker.stderr()).toBe(1);
    expect(worker.stderr()).not.toMatch(/terminate called|Napi::Error/);
    expect(worker.stderr()).toMatch(/exiting without waiting for jobs in flight/);
  }, 60_000);
});

describe('log levels', () => {
  it('a retried batch logs at warn and a batch that failed for good at error, with runId, stage, batch, attempt and error kind', async () => {
    const prefix = uniquePrefix('lvl');
    const config = await writeConfig({ redisUrl: redis.url, prefix });
    const few = join(dir, 'few');
    await mkdir(few);
    for (const name of ['a.png', 'b.png'])
      await writeFile(
        join(few, name),
        await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
          .png()
          .toBuffer(),
      );
    const out = join(dir, 'out-levels');
    await execFileP(process.execPath, ['bin/cascade.js', 'submit', few, '--out', out, '--config', config, '--run-id', 'lvl-1'], {
      env: { ...process.env, REDIS_URL: '' },
      timeout: 30_000,
    });
    // A file where the parts folder goes: every write of the batch's part fails (ENOTDIR/EEXIST), even as root.
    await rm(join(out, 'parts'), { recursive: true, force: true });
    await writeFile(join(out, 'parts'), 'not a folder');
    const worker = spawnCli(['worker', 'little', '--config', config], { CASCADE_LOG_FORMAT: 'json' });
    try {
      await worker.waitFor(/"final":true/, 30_000);
      const lines = worker
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => String(l.msg).includes('failed (attempt'));
      expect(lines.map((l) => [l.level, l.final, l.attempt])).toEqual([
        [40, false, 1],
        [40, false, 2],
        [50, true, 3],
      ]);
      for (const l of lines) expect(l).toMatchObject({ runId: 'lvl-1', stage: 'little', batch: 0, attempts: 3, errorKind: expect.stringMatching(/^E[A-Z]+$/) });
    } finally {
      worker.child.kill('SIGTERM');
      expect((await worker.exited).code).toBe(0);
    }
  }, 60_000);
});

describe('logs on a terminal', () => {
  const script = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!script)(
    'a TTY run shows the progress bar and readable log lines, no JSON',
    async () => {
      const cmd = `${process.execPath} bin/cascade.js run ${images} --out ${join(dir, 'out-tty')} --config ${await writeConfig()}`;
      const { stdout } = await execFileP('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, REDIS_URL: '', NO_COLOR: '1' }, timeout: 60_000 });
      expect(stdout).toMatch(/\d+\/\d+ images \|/);
      expect(stdout).toMatch(/\d\d:\d\d:\d\d INFO +REDIS_URL is not set: started a private redis-server/);
      expect(stdout).toMatch(/\d\d:\d\d:\d\d INFO +listed 160 images/);
      expect(stdout).not.toMatch(/\{"level":/);
    },
    90_000,
  );
});
