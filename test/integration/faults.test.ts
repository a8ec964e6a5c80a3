/**
 * Fault injection: workers in their own processes (test/helpers/worker-process.ts) killed with
 * SIGKILL mid-batch, Redis killed and restarted from its AOF, the S3 endpoint unreachable for
 * 10 s, duplicate submissions, the real `cascade worker` started before Redis, broken model
 * files. Every run must end with the manifest invariant holding (exactly one row per input) and
 * exact counts. Redis and S3 outages go through a counting proxy (helpers/outage-proxy.ts): each
 * test checks that the fault landed on a run with work left and that clients tried during it.
 * (Which S3 errors count as transient, and their retry: unit/s3-transient.test.ts.)
 *
 * The models are the colour test models plus a dead, slow branch (helpers/slow-models.ts), so a
 * batch takes long enough to be killed in flight. Images alternate red (little accepts) and grey
 * (forwarded to big), so every batch of 2 sends exactly one image to big.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { QueueEvents } from 'bullmq';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
import { startPrivateRedis } from '../../cli/private-redis.js';
import { type CliProcess, spawnCascade } from '../helpers/cli-process.js';
import { startOutageProxy } from '../helpers/outage-proxy.js';
import { uniquePrefix } from '../helpers/redis.js';
import { S3RVER_ENV, startS3, type TestS3 } from '../helpers/s3.js';
import { writeSlowModels } from '../helpers/slow-models.js';
import { fixture, withRedis, withTempDir } from '../helpers/fixtures.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { pinTestModel, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { Stores } from '../../pipeline/storage/stores.js';

const N = 8;
const EXTENSIONS = ['.png'];

const work = withTempDir('faults');
const redis = withRedis();
// Not withModels: these tests need the slow models, so that a batch can be killed in flight.
const models = fixture('slow models', () => writeSlowModels(join(work.path, 'models'), { k: 640, matmuls: 4 }));
let images: string;
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
async function scenario(redisUrl: string, o: { out?: string; source?: string; s3Endpoint?: string; littleModel?: string; workerRedisUrl?: string } = {}) {
  const id = `f${++counter}`;
  const prefix = uniquePrefix(`faults-${id}`);
  const out = o.out ?? join(work.path, `out-${id}`);
  const source = o.source ?? images;
  const spec = (path: string) => colourSpec(path, models.labels);
  const config = {
    little: spec(models.little),
    big: spec(models.big),
    threshold: 0.9,
    batchSize: 2,
    concurrency: 1,
    intraOpThreads: 1,
    // The workers' way to Redis; the test side below connects to `redisUrl` directly.
    redisUrl: o.workerRedisUrl ?? redisUrl,
    prefix,
    jobLocks: { lockDurationMs: 1500, stalledIntervalMs: 1000, maxStalledCount: 3 },
    // A fleet worker reads nothing local unless its config names the folders it may read.
    sources: { localRoots: [images] },
    ...(o.s3Endpoint ? { s3: { endpoint: o.s3Endpoint, forcePathStyle: true } } : {}),
  };
  const configFile = join(work.path, `config-${id}.json`);
  await writeFile(configFile, JSON.stringify(config));
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const stores = new Stores({}, o.s3Endpoint ? { clients: { s3: makeS3Client({ endpoint: o.s3Endpoint, forcePathStyle: true }, { credentials }) } } : {});
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
    submit: () => submitRun({ spec: runSpec, refs: listSource(source, { extensions: EXTENSIONS, stores }), tracker, queues, output: stores.open(out) }),
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
    verify: () => verifyManifest(listSource(source, { extensions: EXTENSIONS, stores }), readManifestLines(out, stores)),
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

beforeAll(async () => {
  images = join(work.path, 'images');
  await mkdir(images, { recursive: true });
  for (const [name, bytes] of await imageFiles()) await writeFile(join(images, name), bytes);
});

afterAll(async () => {
  await Promise.allSettled(workers.map((w) => w.kill9()));
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
    // Behind a proxy that keeps one port for its whole life, so the restarted server may take
    // any free port (no port race), and the connections refused while it is down are counted.
    const dataDir = await mkdtemp(join(work.path, 'aof-'));
    const aof = ['--dir', dataDir, '--appendonly', 'yes', '--appendfsync', 'always'];
    let server = await startPrivateRedis({ extraArgs: aof });
    const proxy = await startOutageProxy(server.port);
    const s = await scenario(`redis://${proxy.address}`);
    try {
      const w = worker(s.configFile, ['little', 'big', 'merge']);
      await w.waitFor(/worker ready/);
      await s.submit();
      await until(async () => ((await s.progress())?.final ?? 0) > 0, 'a first counted part');
      // The fault lands on a run with work left (else nothing below is recovered from the AOF).
      expect((await s.progress())!.final).toBeLessThan(N);
      proxy.down();
      process.kill(server.pid, 'SIGKILL');
      await server.stop();
      await sleep(1000);
      server = await startPrivateRedis({ extraArgs: aof });
      const refused = proxy.refused;
      proxy.up(server.port);
      // The worker and the test's own connection kept trying while Redis was gone.
      expect(refused).toBeGreaterThan(0);
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
      await proxy.close();
      await server.stop();
    }
  }, 90_000);

  it('the S3 endpoint unreachable for 10 s mid-run: retried, no image errors', async () => {
    const s3: TestS3 = await startS3({ buckets: ['faults-in', 'faults-out'] });
    const proxy = await startOutageProxy(s3.port);
    const endpoint = `http://${proxy.address}`;
    for (const [name, body] of await imageFiles()) await s3.client.send(new PutObjectCommand({ Bucket: 'faults-in', Key: `imgs/${name}`, Body: body }));
    const s = await scenario(redis.url, { source: 's3://faults-in/imgs/', out: 's3://faults-out/run/', s3Endpoint: endpoint });
    try {
      const w = worker(s.configFile, ['little', 'big', 'merge'], S3RVER_ENV);
      await w.waitFor(/worker ready/);
      await s.submit();
      await until(async () => ((await s.progress())?.final ?? 0) > 0, 'a first counted part');
      // The outage lands on a run with work left, and the worker tries S3 during it.
      expect((await s.progress())!.final).toBeLessThan(N);
      proxy.down();
      await sleep(10_000);
      const refused = proxy.refused;
      proxy.up();
      expect(refused).toBeGreaterThan(0);
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

  it('`cascade worker` started before Redis is reachable keeps trying, then works, and exits 0 on SIGTERM', async () => {
    // The worker reaches Redis through a proxy that refuses every connection until up(); the
    // test side connects directly, so the proxy counts the worker's attempts only.
    const proxy = await startOutageProxy(redis.port, { down: true });
    const s = await scenario(redis.url, { workerRedisUrl: `redis://${proxy.address}` });
    // CASCADE_REDIS_TIMEOUT_MS is how long the one-shot commands wait for Redis before failing;
    // a worker must not give up after it.
    const w = spawnCascade(['worker', 'little', 'big', 'merge', '--config', s.configFile], {
      ...S3RVER_ENV,
      CASCADE_LOG_LEVEL: 'info',
      CASCADE_REDIS_TIMEOUT_MS: '500',
    });
    let exit: Awaited<CliProcess['exited']>;
    try {
      await until(async () => proxy.refused >= 3, 'three refused connections from the worker');
      await sleep(1500);
      // Refused again and again, and still running: no error line, no exit.
      expect(w.child.exitCode).toBeNull();
      expect(w.output()).not.toMatch(/^cascade: /m);
      proxy.up();
      await s.submit();
      const summary = await s.done();
      expectExactCounts(summary);
      await expectInvariant(await s.verify());
    } finally {
      await s.close();
      exit = await w.stop();
      await proxy.close();
    }
    expect(exit, w.output()).toEqual({ code: 0, signal: null });
    expect(w.output()).toMatch(/worker stopped cleanly/);
  }, 90_000);

  it('a run whose model file went missing or changed after planning fails its jobs with one clear reason and writes no row', async () => {
    for (const damage of ['missing', 'changed'] as const) {
      const copy = join(work.path, `little-${damage}.onnx`);
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
