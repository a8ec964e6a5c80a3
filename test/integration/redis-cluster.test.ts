/**
 * Redis connection variants: a real 3-master Redis Cluster on loopback running the unchanged
 * pipeline under a hash-tagged prefix, TLS, and a password-protected redis-server (the cluster
 * URL parsing and prefix check: unit/redis-url.test.ts).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

describe('pipeline on a 3-master Redis Cluster', () => {
  let dir: string;
  let images: string;
  let models: TestModels;
  let cluster: TestRedisCluster;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-cluster-run-'));
    images = join(dir, 'images');
    await mkdir(images, { recursive: true });
    const colours = [
      { r: 255, g: 0, b: 0 },
      { r: 0, g: 255, b: 0 },
      { r: 0, g: 0, b: 255 },
      { r: 128, g: 128, b: 128 },
    ];
    for (let i = 0; i < 10; i++)
      await writeFile(
        join(images, `img-${i}.png`),
        await sharp({ create: { width: 9, height: 9, channels: 3, background: colours[i % 4]! } })
          .png()
          .toBuffer(),
      );
    await writeFile(join(images, 'broken.png'), 'not a png');
    [models, cluster] = await Promise.all([writeTestModels(join(dir, 'models')), startRedisCluster()]);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function config(prefix: string): Promise<string> {
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(
      file,
      JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 3, redisUrl: cluster.url, prefix }),
    );
    return file;
  }

  it('runs unchanged with a hash-tagged prefix and passes verify', async () => {
    const out = join(dir, 'out');
    const summary = await runCommand(images, { out, config: await config('{cascade}'), progress: false, json: true });
    expect(summary).toMatchObject({ images: 11, errors: 1 });
    expect(summary.stages[0]).toMatchObject({ images: 11, accepted: 8, forwarded: 2, errors: 1 });
    expect(summary.stages[1]).toMatchObject({ images: 2, accepted: 2 });
    const report = await verifyManifest(
      listSource(images, { extensions: ['.png'] }),
      readManifestLines(out, () => undefined as never),
    );
    expect(report).toMatchObject({ ok: true, sourceKeys: 11, manifestRows: 11, errorRows: 1 });
  }, 60_000);

  it('refuses a prefix without a hash tag with a clear error', async () => {
    await expect(runCommand(images, { out: join(dir, 'out-bad'), config: await config('cascade'), progress: false })).rejects.toThrow(
      /prefix "cascade" has no hash tag/,
    );
    // Commands that only track runs (submit, status) meet the same check through the tracker.
    const connection = connectRedis(cluster.url);
    try {
      expect(() => new RunTracker(connection, 'cascade')).toThrow(/prefix "cascade" has no hash tag/);
      expect(() => new RunTracker(connection, '{cascade}')).not.toThrow();
    } finally {
      connection.disconnect();
    }
  });
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
  let server: ChildProcess;
  let port: number;

  beforeAll(async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', 's3cr3t pass', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
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
      if (Date.now() > deadline) throw new Error('redis-server with a password did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(() => {
    server?.kill('SIGKILL');
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
