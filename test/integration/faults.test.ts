/**
 * Fault injection: workers in their own processes (test/helpers/worker-process.ts) killed with
 * SIGKILL mid-batch, Redis killed and restarted from its AOF, the S3 endpoint unreachable for
 * 10 s, duplicate submissions, a worker started before Redis, broken model files. Every run
 * must end with the manifest invariant holding (exactly one row per input) and exact counts.
 * (Which S3 errors count as transient, and their retry: unit/s3-transient.test.ts.)
 *
 * The models are the colour test models plus a dead, slow branch (helpers/slow-models.ts), so a
 * batch takes long enough to be killed in flight. Images alternate red (little accepts) and grey
 * (forwarded to big), so every batch of 2 sends exactly one image to big.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { QueueEvents } from 'bullmq';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForRun } from '../../queue/wait-for-run.js';
import type { RunSummary } from '../../pipeline/results/manifest.js';
import { makeS3Client } from '../../pipeline/storage/s3-store.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { stageQueueName, type RunSpec } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { writeSlowModels, type SlowModels } from '../helpers/slow-models.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { pinTestModel, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { openStore } from '../../pipeline/storage/open-store.js';

const N = 8;
const EXTENSIONS = ['.png'];
const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

let dir: string;
let images: string;
let models: SlowModels;
let redis: TestRedis;
const workers: WorkerProcess[] = [];
let counter = 0;

async function imageFiles(): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < N; i++) {
    const c = i % 2 === 0 ? { r: 250, g: 0, b: 0 } : { r: 120, g: 120, b: 120 };
    files.set(
      `img-${i}.png`,
      await sharp({ create: { width: 10, height: 10, channels: 3, background: c } })
        .png()
        .toBuffer(),
    );
  }
  return files;
}

function worker(configFile: string, roles: string[], env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker(configFile, roles, env);
  workers.push(w);
  return w;
}

/** A run against `redisUrl`: its config file for workers, and the test side's submit/wait/verify. */
async function scenario(redisUrl: string, o: { out?: string; source?: string; s3Endpoint?: string; littleModel?: string } = {}) {
  const id = `f${++counter}`;
  const prefix = uniquePrefix(`faults-${id}`);
  const out = o.out ?? join(dir, `out-${id}`);
  const source = o.source ?? images;
  const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });
  const config = {
    little: spec(models.little),
    big: spec(models.big),
    threshold: 0.9,
    batchSize: 2,
    concurrency: 1,
    intraOpThreads: 1,
    redisUrl,
    prefix,
    jobLocks: { lockDurationMs: 1500, stalledIntervalMs: 1000, maxStalledCount: 3 },
    // A fleet worker reads nothing local unless its config names the folders it may read.
    sources: { localRoots: [images] },
    ...(o.s3Endpoint ? { s3: { endpoint: o.s3Endpoint, forcePathStyle: true } } : {}),
  };
  const configFile = join(dir, `config-${id}.json`);
  await writeFile(configFile, JSON.stringify(config));
  const s3 = () => makeS3Client({ endpoint: o.s3Endpoint, forcePathStyle: true }, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  const connection = connectRedis(redisUrl);
  // Refused connections while Redis is down are expected here; ioredis retries them.
  connection.on('error', () => undefined);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const cache = testModelCache();
  const pins = { little: await pinTestModel('little', spec(o.littleModel ?? models.little), cache), big: await pinTestModel('big', spec(models.big), cache) };
  await cache.close();
  const runSpec: RunSpec = {
    runId: `run-${id}`,
    source,
    out,
    metric: 'maxprob',
    batchSize: 2,
    ...RUN_DEFAULTS,
    stages: [
      { name: 'little', ...pins.little, threshold: 0.9 },
      { name: 'big', ...pins.big, threshold: null },
    ],
    createdAt: new Date().toISOString(),
  };
  return {
    configFile,
    out,
    prefix,
    queues,
    tracker,
    submit: () => submitRun({ spec: runSpec, refs: listSource(source, { extensions: EXTENSIONS, s3 }), tracker, queues, output: openStore(out, s3) }),
    /** Waits for the merge, with a deadline so a lost batch fails the test instead of hanging it. */
    done: (timeoutMs = 60_000) =>
      Promise.race([
        waitForRun(tracker, runSpec.runId, () => {}, 100),
        sleep(timeoutMs).then(async () => {
          throw new Error(`run not merged after ${timeoutMs} ms: ${JSON.stringify(await tracker.progress(runSpec.runId))}`);
        }),
      ]),
    progress: () => tracker.progress(runSpec.runId),
    /** The invariant, checked the way `cascade verify` does. */
    verify: () => verifyManifest(listSource(source, { extensions: EXTENSIONS, s3 }), readManifestLines(out, s3)),
    /** Ids of jobs BullMQ reported stalled on `stage`'s queue from now on. */
    watchStalled: async (stage: string) => {
      const events = new QueueEvents(stageQueueName(stage), { connection: connection.duplicate(), prefix });
      await events.waitUntilReady();
      const ids: string[] = [];
      events.on('stalled', ({ jobId }) => ids.push(jobId));
      return { ids, close: () => events.close() };
    },
    close: async () => {
      await queues.close();
      connection.disconnect();
    },
  };
}

/** Exact routing: every batch of 2 has one red (little) and one grey (big). */
function expectExactCounts(s: RunSummary) {
  expect(s.images).toBe(N);
  expect(s.errors).toBe(0);
  expect(s.stages[0]).toMatchObject({ images: N, accepted: N / 2, forwarded: N / 2, errors: 0 });
  expect(s.stages[1]).toMatchObject({ images: N / 2, accepted: N / 2, errors: 0 });
}

async function expectInvariant(report: Awaited<ReturnType<Awaited<ReturnType<typeof scenario>>['verify']>>) {
  expect(report).toMatchObject({ ok: true, sourceKeys: N, manifestRows: N, errorRows: 0 });
}

/** A re-run batch overwrites its part: one part per batch and stage, whatever ran twice. */
async function expectOnePartPerBatch(out: string) {
  const parts = (await readdir(join(out, 'parts'))).sort();
  expect(parts).toEqual([0, 1, 2, 3].flatMap((b) => [0, 1].map((st) => `${String(b).padStart(8, '0')}.stage${st}.json`)));
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server with `--appendonly yes --appendfsync always` in `dataDir`, restartable on the same port. */
async function startAofRedis(port: number, dataDir: string): Promise<{ kill9(): Promise<void> }> {
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''],
    { stdio: 'ignore' },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ping = promisify(execFile);
  await until(
    async () => (await ping('redis-cli', ['-p', String(port), 'ping']).catch(() => ({ stdout: '' }))).stdout.trim() === 'PONG',
    `redis on ${port}`,
    10_000,
  );
  return {
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A TCP proxy to `target` that can refuse and cut every connection, as an endpoint outage does. */
async function startOutageProxy(targetPort: number): Promise<{ port: number; down(): Promise<void>; up(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const make = () =>
    net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
  let server = make();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
  const down = async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const s of sockets) s.destroy();
    await closed;
  };
  return {
    port,
    down,
    up: async () => {
      server = make();
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
    close: () => down().catch(() => undefined),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-faults-'));
  images = join(dir, 'images');
  await mkdir(images, { recursive: true });
  for (const [name, bytes] of await imageFiles()) await writeFile(join(images, name), bytes);
  [models, redis] = await Promise.all([writeSlowModels(join(dir, 'models'), { k: 640, matmuls: 4 }), startRedis()]);
});

afterAll(async () => {
  await Promise.allSettled(workers.map((w) => w.kill9()));
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('faults: nothing lost, nothing doubled', () => {
  it('kill -9 of a little worker mid-batch: the stalled batch re-runs on another worker', async () => {
    const s = await scenario(redis.url);
    const stalled = await s.watchStalled('little');
    try {
      const victim = worker(s.configFile, ['little']);
      await victim.waitFor(/worker ready/);
      await s.submit();
      await until(async () => (await s.queues.stage('little').getActiveCount()) > 0, 'an active little job');
      await victim.kill9();
      worker(s.configFile, ['little', 'big', 'merge']);
      const summary = await s.done();
      expectExactCounts(summary);
      expect(stalled.ids.length).toBeGreaterThan(0);
      await expectInvariant(await s.verify());
      await expectOnePartPerBatch(s.out);
    } finally {
      await stalled.close();
      await s.close();
    }
  }, 90_000);

  it('kill -9 of a big worker mid-batch: the stalled batch re-runs on another worker', async () => {
    const s = await scenario(redis.url);
    const stalled = await s.watchStalled('big');
    try {
      const victim = worker(s.configFile, ['big']);
      const front = worker(s.configFile, ['little', 'merge']);
      await Promise.all([victim.waitFor(/worker ready/), front.waitFor(/worker ready/)]);
      await s.submit();
      await until(async () => (await s.queues.stage('big').getActiveCount()) > 0, 'an active big job');
      await victim.kill9();
      worker(s.configFile, ['big']);
      const summary = await s.done();
      expectExactCounts(summary);
      expect(stalled.ids.length).toBeGreaterThan(0);
      await expectInvariant(await s.verify());
      await expectOnePartPerBatch(s.out);
    } finally {
      await stalled.close();
      await s.close();
    }
  }, 90_000);

  it('Redis killed and restarted from its AOF mid-run', async () => {
    const port = await freePort();
    const dataDir = await mkdtemp(join(dir, 'aof-'));
    let server = await startAofRedis(port, dataDir);
    const s = await scenario(`redis://127.0.0.1:${port}`);
    try {
      const w = worker(s.configFile, ['little', 'big', 'merge']);
      await w.waitFor(/worker ready/);
      await s.submit();
      await until(async () => ((await s.progress())?.final ?? 0) > 0, 'a first counted part');
      await server.kill9();
      await sleep(1000);
      server = await startAofRedis(port, dataDir);
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
      await server.kill9();
    }
  }, 90_000);

  it('the S3 endpoint unreachable for 10 s mid-run: retried, no image errors', async () => {
    const s3: TestS3 = await startS3({ buckets: ['faults-in', 'faults-out'] });
    const proxy = await startOutageProxy(s3.port);
    const endpoint = `http://127.0.0.1:${proxy.port}`;
    for (const [name, body] of await imageFiles()) await s3.client.send(new PutObjectCommand({ Bucket: 'faults-in', Key: `imgs/${name}`, Body: body }));
    const s = await scenario(redis.url, { source: 's3://faults-in/imgs/', out: 's3://faults-out/run/', s3Endpoint: endpoint });
    try {
      const w = worker(s.configFile, ['little', 'big', 'merge'], S3_ENV);
      await w.waitFor(/worker ready/);
      await s.submit();
      await until(async () => ((await s.progress())?.final ?? 0) > 0, 'a first counted part');
      await proxy.down();
      await sleep(10_000);
      await proxy.up();
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
      await proxy.close();
      await s3.stop();
    }
  }, 120_000);

  it('the same run submitted twice at once and again mid-run: counted once', async () => {
    const s = await scenario(redis.url);
    try {
      const w = worker(s.configFile, ['little', 'big', 'merge']);
      await w.waitFor(/worker ready/);
      const [a, b] = await Promise.all([s.submit(), s.submit()]);
      // The slower submission resumes the listing the other started; job ids dedupe the batches.
      for (const r of [a, b]) expect(r).toMatchObject({ images: N, batches: N / 2 });
      await until(async () => ((await s.progress())?.final ?? 0) > 0, 'a first counted part');
      expect((await s.submit()).alreadySubmitted).toBe(true);
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
    }
  }, 90_000);

  it('a worker started before Redis is reachable waits, then works', async () => {
    const port = await freePort();
    const dataDir = await mkdtemp(join(dir, 'late-'));
    const s = await scenario(`redis://127.0.0.1:${port}`);
    const w = worker(s.configFile, ['little', 'big', 'merge']);
    await sleep(1500);
    expect(w.output()).not.toMatch(/worker failed to start/);
    const server = await startAofRedis(port, dataDir);
    try {
      await w.waitFor(/worker ready/);
      await s.submit();
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
      await w.stop();
      await server.kill9();
    }
  }, 90_000);

  it('a run whose model file went missing or changed after planning fails its jobs with one clear reason and writes no row', async () => {
    for (const damage of ['missing', 'changed'] as const) {
      const copy = join(dir, `little-${damage}.onnx`);
      await writeFile(copy, await readFile(models.little));
      const s = await scenario(redis.url, { littleModel: copy });
      if (damage === 'missing') await rm(copy);
      else await writeFile(copy, Buffer.from('this is not a protobuf model'));
      const w = worker(s.configFile, ['little']);
      await w.waitFor(/worker ready/);
      await s.submit();
      const queue = s.queues.stage('little');
      const batches = Math.ceil(N / 2);
      // Jobs waiting out their backoff (1 s, 2 s) are promoted at once: the reason their last
      // attempt fails with is tested here, not the backoff.
      for (let i = 0; i < 300 && (await queue.getFailedCount()) < batches; i++) {
        await queue.promoteJobs();
        await sleep(100);
      }
      const failed = await queue.getFailed();
      expect(failed).toHaveLength(batches);
      const reason =
        damage === 'missing'
          ? /^stage little: cannot read model .*little-missing\.onnx/
          : /^stage little: model .*little-changed\.onnx has sha256 [0-9a-f]{12}, but the run pins [0-9a-f]{12}/;
      for (const job of failed) expect(job.failedReason).toMatch(reason);
      expect((await s.progress())!.final).toBe(0);
      await w.stop();
      await s.close();
    }
  }, 120_000);
});
