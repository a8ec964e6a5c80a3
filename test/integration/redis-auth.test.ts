/**
 * Redis credentials and TLS on real redis-servers, through the built CLI where a user would see
 * the result: a wrong password on a `redis-cluster://` URL ends every command within the
 * start-up timeout with one line (exit 2); a password rotated on the server while `cascade
 * worker` runs gives one warn line, one info line once it is accepted again, and the worker
 * keeps running; TLS (`rediss://`) and a password in REDIS_URL work. No captured output holds
 * a password. (Watch logic and URL redaction alone: unit/redis-watch.test.ts.)
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../../queue/redis-connection.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { writeTestModels } from '../helpers/test-models.js';

/** `cascade <args>` with `env` added: exit code, stdout and stderr. */
async function cascade(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return promisify(execFile)(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, ...env }, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, out: stdout + stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, out: err.stdout + err.stderr }),
  );
}

describe('a wrong password on a redis-cluster:// URL', () => {
  const password = 'cluster-pw-right';
  const wrong = 'cluster-pw-WRONG';
  let cluster: TestRedisCluster;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-cluster-auth-'));
    cluster = await startRedisCluster({ password });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ends status, retry, schedule list and submit with one line each, exit 2, no password', async () => {
    const url = cluster.url.replace('redis-cluster://', `redis-cluster://:${wrong}@`);
    const models = await writeTestModels(join(dir, 'models'));
    await mkdir(join(dir, 'images'));
    const env = { REDIS_URL: url, CASCADE_LOG_LEVEL: 'debug' };
    const commands = [
      ['status'],
      ['retry', 'some-run'],
      ['schedule', 'list'],
      ['submit', join(dir, 'images'), '--out', join(dir, 'out'), '--little', models.colourLittle, '--big', models.colourBig],
    ];
    const config = join(dir, 'cascade.json');
    await writeFile(config, JSON.stringify({ prefix: '{c}' }));
    const results = await Promise.all(commands.map((args) => cascade([...args, '--config', config], env)));
    for (const [i, r] of results.entries()) {
      expect(r.code, `${commands[i]![0]}: ${r.out}`).toBe(2);
      expect(r.out, commands[i]![0]).toMatch(
        /^cascade: Redis at redis-cluster:\/\/\*\*\*@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+ rejected the credentials: .*WRONGPASS[^\n]*\n$/,
      );
      expect(r.out).not.toContain(wrong);
      expect(r.out).not.toContain(password);
    }
  }, 90_000);

  it('the right password works', async () => {
    const client = connectRedis(cluster.url.replace('redis-cluster://', `redis-cluster://:${password}@`));
    try {
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
    }
  });
});

describe('a password rotated on the server while cascade worker runs', () => {
  const before = 'rotate-pw-before';
  const after = 'rotate-pw-after';
  let redis: TestRedis;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-rotate-'));
    redis = await startRedis();
    const admin = connectRedis(redis.url);
    try {
      await admin.config('SET', 'requirepass', before);
    } finally {
      admin.disconnect();
    }
  });

  afterAll(async () => {
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Set the server's password from `from` to `to`; `dropClients` then closes every other connection, so each must log in again. */
  async function setPassword(from: string, to: string, dropClients = false): Promise<void> {
    const admin = connectRedis(`redis://:${from}@127.0.0.1:${redis.port}`);
    try {
      await admin.config('SET', 'requirepass', to);
      if (dropClients) await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    } finally {
      admin.disconnect();
    }
  }

  /** Failed AUTH attempts the server has seen (ACL LOG groups them: the sum of their counts). */
  async function failedAuths(password: string): Promise<number> {
    const admin = connectRedis(`redis://:${password}@127.0.0.1:${redis.port}`);
    try {
      const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
      return entries
        .map((e) => Object.fromEntries(Array.from({ length: e.length / 2 }, (_, i) => [String(e[2 * i]), e[2 * i + 1]])))
        .filter((e) => e.reason === 'auth')
        .reduce((n, e) => n + Number(e.count), 0);
    } finally {
      admin.disconnect();
    }
  }

  /**
   * Run a cascade command logged in with `before`; once it logs `ready`, rotate the password to
   * `after` and drop every connection, let it fail `failures` logins, rotate back, and stop it once
   * it is back. Its exit, its whole output, and the failed logins the server saw.
   */
  async function throughRotation(label: string, args: string[], ready: RegExp, failures: number) {
    const config = join(dir, `${label}.json`);
    await writeFile(config, JSON.stringify({ prefix: uniquePrefix(label) }));
    const child = spawnCascade([...args, '--config', config], {
      REDIS_URL: `redis://:${before}@127.0.0.1:${redis.port}`,
      CASCADE_LOG_FORMAT: 'json',
      CASCADE_LOG_LEVEL: 'info',
    });
    let failed: number;
    try {
      await child.waitFor(ready);
      await setPassword(before, after, true);
      await child.waitFor(/rejected the credentials/);
      for (let i = 0; i < 600 && (await failedAuths(after)) < failures; i++) await new Promise((r) => setTimeout(r, 50));
      failed = await failedAuths(after);
      await setPassword(after, before);
      await child.waitFor(/is back after/);
    } catch (err) {
      await child.stop();
      throw new Error(`${(err as Error).message}\n${label} output:\n${child.output()}`);
    }
    return { exit: await child.stop(), out: child.output(), failed };
  }

  it('logs one warn line while it is rejected and one info line once accepted again, keeps running, never shows a password', async () => {
    // Every connection of the worker must log in again after the rotation.
    const { exit, out, failed } = await throughRotation('rotate', ['worker', 'little', 'big', 'merge', 'scheduler'], /worker ready/, 20);
    // Many failed logins, not one: the bounded output below is not for lack of attempts.
    expect(failed).toBeGreaterThanOrEqual(20);
    expect(exit).toEqual({ code: 0, signal: null });
    const all = out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    // Three lines depend on timing, each at most once: the worker lists the runs in flight once at
    // start (to open their models) and reads their queue layouts once, and a rotation during
    // either read adds its line; a connection killed mid-write fails on the socket (EPIPE) before
    // it fails to log in again.
    const optional = [
      /^cannot list the runs in flight: WRONGPASS/,
      /^cannot check the runs' queue layouts: WRONGPASS/,
      /^lost the connection to Redis at redis:\/\/\*\*\*@[\d.:]+ \(\w+[^)]*\); reconnecting$/,
    ];
    const lines = all.filter((l) => !optional.some((re) => re.test(l.msg)));
    for (const re of optional) expect(all.filter((l) => re.test(l.msg)).length).toBeLessThanOrEqual(1);
    expect(lines.map((l) => [l.level, l.msg.replace(/\d+\.\d s$/, 'N s').replace(/127\.0\.0\.1:\d+/, 'HOST')])).toEqual([
      [30, expect.stringMatching(/^worker ready: roles little, big, merge, scheduler on redis:\/\/\*\*\*@HOST/)],
      [
        40,
        'Redis at redis://***@HOST rejected the credentials (WRONGPASS invalid username-password pair or user is disabled.); was the password changed? Reconnecting until they are accepted',
      ],
      [30, 'Redis at redis://***@HOST is back after N s'],
      [30, 'SIGTERM: no new jobs; finishing the batches in flight (send it again to exit now)'],
      [30, 'worker stopped cleanly'],
    ]);
    expect(out).not.toContain(before);
    expect(out).not.toContain(after);
  }, 90_000);

  it('cascade dashboard reports the rotation in one line and the return in another, never the password', async () => {
    // Let it fail to log in many times: each failure used to print ioredis' error whole.
    const { exit, out } = await throughRotation('rotate-dash', ['dashboard', '--port', '0'], /dashboard on http/, 40);
    expect(exit).toEqual({ code: 0, signal: null });
    const msgs = out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (JSON.parse(l) as { msg: string }).msg.replace(/\d+\.\d s$/, 'N s').replace(/127\.0\.0\.1:\d+/g, 'HOST'));
    // A connection killed mid-write may fail on the socket first (EPIPE) before failing to log in.
    const optional = /^lost the connection to Redis at redis:\/\/\*\*\*@HOST \(\w+[^)]*\); reconnecting$/;
    expect(msgs.filter((m) => optional.test(m)).length).toBeLessThanOrEqual(1);
    expect(msgs.filter((m) => !optional.test(m))).toEqual([
      expect.stringMatching(/^dashboard on http:\/\/HOST\/ \(read-only\) for redis:\/\/\*\*\*@HOST \(prefix rotate-dash-\w+\): merge, schedules$/),
      'Redis at redis://***@HOST rejected the credentials (WRONGPASS invalid username-password pair or user is disabled.); was the password changed? Reconnecting until they are accepted',
      'Redis at redis://***@HOST is back after N s',
      'SIGTERM: stopping the dashboard',
    ]);
    expect(out).not.toContain(before);
    expect(out).not.toContain(after);
  }, 90_000);
});

describe('TLS Redis (rediss://)', () => {
  let work: string;
  let server: ChildProcess;
  let port: number;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cascade-tls-'));
    const run = promisify(execFile);
    // A self-signed certificate for 127.0.0.1, trusted by the client through NODE_EXTRA_CA_CERTS.
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(work, 'key.pem'),
      '-out',
      join(work, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    server = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--tls-cert-file',
        join(work, 'cert.pem'),
        '--tls-key-file',
        join(work, 'key.pem'),
        '--tls-ca-cert-file',
        join(work, 'cert.pem'),
        '--tls-auth-clients',
        'no',
        '--requirepass',
        'tls-pw',
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 10_000;
    while (
      !(await new Promise<boolean>((resolve) =>
        net
          .connect(port, '127.0.0.1')
          .once('connect', function (this: net.Socket) {
            this.destroy();
            resolve(true);
          })
          .once('error', () => resolve(false)),
      ))
    ) {
      if (Date.now() > deadline) throw new Error('redis-server with TLS did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    server?.kill('SIGKILL');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('connects over TLS with the password from a rediss:// URL', async () => {
    // A child process, because NODE_EXTRA_CA_CERTS is read once at start-up.
    const script = `import { connectRedis } from ${JSON.stringify(join(process.cwd(), 'queue/redis-connection.ts'))};
      const r = connectRedis(process.argv[1]); console.log(await r.ping()); r.disconnect();`;
    const run = (url: string) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, url], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: join(work, 'cert.pem') },
        timeout: 20_000,
      });
    expect((await run(`rediss://:tls-pw@127.0.0.1:${port}`)).stdout.trim()).toBe('PONG');
  }, 30_000);
});

describe('password-protected Redis', () => {
  let redis: TestRedis;
  let port: number;

  // A private redis-server (its readiness checked by pid, a taken port retried), then the password.
  beforeAll(async () => {
    redis = await startRedis();
    port = redis.port;
    const admin = connectRedis(redis.url);
    try {
      await admin.config('SET', 'requirepass', 's3cr3t pass');
    } finally {
      admin.disconnect();
    }
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('a run with a password in REDIS_URL never shows it in logs, output, manifest or summary', async () => {
    const work = await mkdtemp(join(tmpdir(), 'cascade-secret-'));
    try {
      const models = await writeTestModels(join(work, 'models'));
      await mkdir(join(work, 'images'));
      for (const i of [0, 1, 2])
        await writeFile(
          join(work, 'images', `i${i}.png`),
          await sharp({ create: { width: 9, height: 9, channels: 3, background: { r: 250, g: 0, b: 0 } } })
            .png()
            .toBuffer(),
        );
      const spec = join(work, 'spec.json');
      await writeFile(spec, JSON.stringify({ path: models.colourLittle, labels: models.labels, preprocess: { resize: 8, crop: 8 } }));
      const big = join(work, 'big.json');
      await writeFile(big, JSON.stringify({ path: models.colourBig, labels: models.labels, preprocess: { resize: 8, crop: 8 } }));
      const out = join(work, 'out');
      const env = {
        ...process.env,
        REDIS_URL: `redis://:${encodeURIComponent('s3cr3t pass')}@127.0.0.1:${port}`,
        AWS_SECRET_ACCESS_KEY: 'aws-very-secret-key',
        CASCADE_LOG_LEVEL: 'debug',
      };
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        ['bin/cascade.js', 'run', join(work, 'images'), '--out', out, '--little', spec, '--big', big, '--json'],
        { env, timeout: 60_000 },
      );
      expect(JSON.parse(stdout).images).toBe(3);
      const written = [stdout, stderr, await readFile(join(out, 'manifest.jsonl'), 'utf8'), await readFile(join(out, 'summary.json'), 'utf8')].join('\n');
      for (const secret of ['s3cr3t', encodeURIComponent('s3cr3t pass'), 'aws-very-secret-key']) expect(written).not.toContain(secret);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 60_000);

  it('honours the password in the URL, and fails without it', async () => {
    const good = connectRedis(`redis://:${encodeURIComponent('s3cr3t pass')}@127.0.0.1:${port}`);
    try {
      expect(await good.ping()).toBe('PONG');
    } finally {
      good.disconnect();
    }
    const bad = connectRedis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    bad.on('error', () => undefined);
    try {
      await expect(bad.ping()).rejects.toThrow(/NOAUTH/);
    } finally {
      bad.disconnect();
    }
  });
});
