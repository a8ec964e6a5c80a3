/**
 * Worker metrics: counters fed by the StageWorker hook during a real run (real redis-server,
 * s3rver output, generated models), queue depth read from Redis at scrape time, the HTTP
 * endpoints, what /metrics and /readyz say once a real redis-server is stopped, and a real
 * `cascade worker` process's /metrics under `promtool check metrics` (built CLI: `npm test` builds first).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageErrorKind } from '../../pipeline/results/manifest.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { loadConfig } from '../../config/load-config.js';
import { listSource } from '../../producers/list-source.js';
import { planRun } from '../../producers/plan-run.js';
import { submitRun } from '../../producers/submit-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { CascadeMetrics, serveMetrics } from '../../workers/metrics.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { lastScheduleSuccesses, SCHEDULES_QUEUE, scheduleOfRun, upsertSchedule } from '../../workers/run-scheduler.js';
import { openRunModels, WorkerHealth } from '../../workers/worker-health.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { promtool } from '../helpers/promtool.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { stageStats } from '../helpers/stage-stats.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;
let redis: TestRedis;
let s3: TestS3;

/** The value of one sample in Prometheus text. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-metrics-'));
  models = await writeTestModels(join(dir, 'models'));
  [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['metrics-in', 'metrics-out'] })]);
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
});

afterAll(async () => {
  await Promise.allSettled([redis?.stop(), s3?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

describe('CascadeMetrics', () => {
  it('counts images by stage and outcome, errors by kind, batch latency and the routed fraction', async () => {
    const m = new CascadeMetrics();
    m.onBatch('little', stageStats({ images: 10, accepted: 6, forwarded: 3, errors: 1, jobMs: 200 }), { decode: 1 });
    m.onBatch('little', stageStats({ images: 10, accepted: 8, forwarded: 1, errors: 1, jobMs: 3000 }), { 'too-large': 1 });
    m.onBatch('big', stageStats({ images: 4, accepted: 4, jobMs: 900 }), {});
    const text = await m.text();
    expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'accepted' })).toBe(14);
    expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'forwarded' })).toBe(4);
    expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'error' })).toBe(2);
    expect(sample(text, 'cascade_images_total', { stage: 'big', outcome: 'accepted' })).toBe(4);
    expect(sample(text, 'cascade_errors_total', { stage: 'little', kind: 'decode' })).toBe(1);
    expect(sample(text, 'cascade_errors_total', { stage: 'little', kind: 'too-large' })).toBe(1);
    expect(sample(text, 'cascade_routed_ratio', { stage: 'little' })).toBeCloseTo(4 / 20, 12);
    expect(sample(text, 'cascade_routed_ratio', { stage: 'big' })).toBe(0);
    expect(sample(text, 'cascade_batch_seconds_count', { stage: 'little' })).toBe(2);
    expect(sample(text, 'cascade_batch_seconds_sum', { stage: 'little' })).toBeCloseTo(3.2, 12);
    expect(sample(text, 'cascade_batch_seconds_bucket', { stage: 'little', le: '0.25' })).toBe(1);
  });

  it('starts the known label sets of its stages and merges at 0, so rates and ratios exist before the first batch or error', async () => {
    const text = await new CascadeMetrics({ stages: ['little', 'big'], merges: true }).text();
    for (const stage of ['little', 'big']) {
      for (const outcome of ['accepted', 'forwarded', 'error']) expect(sample(text, 'cascade_images_total', { stage, outcome }), `${stage} ${outcome}`).toBe(0);
      for (const kind of ImageErrorKind.options) expect(sample(text, 'cascade_errors_total', { stage, kind }), `${stage} ${kind}`).toBe(0);
      expect(sample(text, 'cascade_batch_seconds_count', { stage })).toBe(0);
    }
    expect(sample(text, 'cascade_runs_total', { schedule: '', outcome: 'merged' })).toBe(0);
    expect(sample(text, 'cascade_runs_total', { schedule: '', outcome: 'failed' })).toBe(0);
    // Nothing for stages this process does not run.
    expect(await new CascadeMetrics().text()).not.toMatch(/^cascade_errors_total\{/m);
  });

  it('keeps each instance’s counters in its own registry', async () => {
    const a = new CascadeMetrics();
    const b = new CascadeMetrics({ registry: new Registry() });
    a.onBatch('little', stageStats({ images: 1, accepted: 1 }), {});
    expect(sample(await a.text(), 'cascade_images_total', { stage: 'little', outcome: 'accepted' })).toBe(1);
    expect(sample(await b.text(), 'cascade_images_total', { stage: 'little', outcome: 'accepted' })).toBeUndefined();
  });

  it('reads queue depth from Redis when scraped, and serves it over HTTP', async () => {
    const connection = connectRedis(redis.url);
    const queue = new Queue('stage-little', { connection, prefix: uniquePrefix('depth') });
    const clock = Date.now();
    const m = new CascadeMetrics({ queues: () => [{ name: 'stage-little', queue }], now: () => clock });
    const server = await serveMetrics(m, 0, '127.0.0.1');
    try {
      expect(sample(await m.text(), 'cascade_queue_oldest_waiting_seconds', { queue: 'stage-little' })).toBe(0);
      // Added 90 s and 30 s before the clock: the oldest is the first, whatever the insertion order.
      await queue.add('batch', { i: 1 }, { timestamp: clock - 90_000 });
      await queue.addBulk([2, 3].map((i) => ({ name: 'batch', data: { i }, opts: { timestamp: clock - 30_000 } })));
      await queue.add('batch', { i: 4 }, { delay: 60_000 });
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      let text = await res.text();
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'waiting' })).toBe(3);
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'delayed' })).toBe(1);
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'active' })).toBe(0);
      expect(sample(text, 'cascade_queue_oldest_waiting_seconds', { queue: 'stage-little' })).toBe(90);
      await queue.drain(true);
      text = await m.text();
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'waiting' })).toBe(0);
      expect(sample(text, 'cascade_queue_oldest_waiting_seconds', { queue: 'stage-little' })).toBe(0);
      expect((await fetch(`http://127.0.0.1:${server.port}/other`)).status).toBe(404);
      expect(await (await fetch(`http://127.0.0.1:${server.port}/healthz`)).text()).toBe('ok\n');
      // No readiness check given: /readyz is not served.
      expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(404);
    } finally {
      await server.close();
      await queue.close();
      connection.disconnect();
    }
  });

  it('is fed by the stage workers during a run: every image once, errors by kind', async () => {
    const colours: Array<[number, number, number]> = [
      [255, 0, 0],
      [0, 255, 0],
      [128, 128, 128],
      [0, 0, 255],
      [64, 64, 64],
    ];
    for (const [i, [r, g, b]] of colours.entries()) {
      const body = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer();
      await s3.client.send(new PutObjectCommand({ Bucket: 'metrics-in', Key: `m/${i}.png`, Body: body }));
    }
    await s3.client.send(new PutObjectCommand({ Bucket: 'metrics-in', Key: 'm/broken.png', Body: Buffer.from('not a png') }));
    const spec = (path: string) => colourSpec(path, models.labels);
    const config = await loadConfig({
      overrides: {
        little: spec(models.colourLittle),
        big: spec(models.colourBig),
        threshold: 0.9,
        batchSize: 2,
        prefix: uniquePrefix('hook'),
        redisUrl: redis.url,
        s3: { endpoint: s3.endpoint, forcePathStyle: true },
      },
    });
    const metrics = new CascadeMetrics();
    const runtime = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => undefined, {
      onBatch: (stage, st, errors) => metrics.onBatch(stage, st, errors),
      onRunFinished: (runId, outcome) => metrics.onRunFinished(scheduleOfRun(runId) ?? '', outcome),
    });
    try {
      const run = await planRun(config, 's3://metrics-in/m/', 's3://metrics-out/m/', runtime.models, 'hook-1');
      await submitRun({
        spec: run,
        refs: listSource(run.source, { extensions: config.extensions, stores: runtime.stores }),
        tracker: runtime.tracker,
        queues: runtime.queues,
        output: runtime.openOutput(run.out),
      });
      await waitForRun(runtime.tracker, 'hook-1', () => undefined);
      const text = await metrics.text();
      expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'accepted' })).toBe(3);
      expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'forwarded' })).toBe(2);
      expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'error' })).toBe(1);
      expect(sample(text, 'cascade_images_total', { stage: 'big', outcome: 'accepted' })).toBe(2);
      expect(sample(text, 'cascade_errors_total', { stage: 'little', kind: 'decode' })).toBe(1);
      expect(sample(text, 'cascade_batch_seconds_count', { stage: 'little' })).toBe(3);
      expect(sample(text, 'cascade_routed_ratio', { stage: 'little' })).toBeCloseTo(2 / 6, 12);
      // The merge completes after waitForRun sees the run merged: wait for the counter itself.
      while (sample(await metrics.text(), 'cascade_runs_total', { schedule: '', outcome: 'merged' }) === undefined) await new Promise((r) => setTimeout(r, 20));
      expect(sample(await metrics.text(), 'cascade_runs_total', { schedule: '', outcome: 'merged' })).toBe(1);
    } finally {
      await runtime.close();
    }
  });

  it('exports prom-client’s default process_* and nodejs_* metrics under their own names, less its gauges named like counters', async () => {
    const text = await new CascadeMetrics({ processMetrics: true }).text();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).not.toMatch(/cascade_process_|cascade_nodejs_/);
    // nodejs_active_handles_total and its siblings are gauges; the per-type gauges stay.
    expect(text).not.toMatch(/^nodejs_active_\w+_total/m);
    expect(text).toMatch(/^# TYPE nodejs_active_handles gauge$/m);
  });

  it('a real `cascade worker` process: promtool check metrics passes on its /metrics, its stages’ counters at 0 before any batch', async () => {
    const prefix = uniquePrefix('promtool');
    const configFile = join(dir, 'promtool-worker.json');
    await writeFile(configFile, JSON.stringify({ prefix, redisUrl: redis.url, concurrency: 1 }));
    // The built CLI (bin/cascade.js → dist/), as deployed; REDIS_URL from the environment would win over the file.
    const worker = spawnCascade(
      ['worker', 'little', 'big', 'merge', 'scheduler', '--config', configFile, '--metrics-port', '0', '--metrics-host', '127.0.0.1'],
      {
        REDIS_URL: '',
      },
    );
    try {
      const port = Number((await worker.waitFor(/metrics on port (\d+)/))[1]);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      expect(res.status).toBe(200);
      const { code, output } = await promtool(['check', 'metrics'], { stdin: text });
      expect([code, output]).toEqual([0, '']);
      expect(sample(text, 'cascade_errors_total', { stage: 'big', kind: 'decode' })).toBe(0);
      expect(sample(text, 'cascade_images_total', { stage: 'little', outcome: 'error' })).toBe(0);
      expect(sample(text, 'cascade_runs_total', { schedule: '', outcome: 'merged' })).toBe(0);
      expect(sample(text, 'cascade_queue_oldest_waiting_seconds', { queue: 'stage-little' })).toBe(0);
    } finally {
      await worker.stop();
    }
  });

  it('with Redis stopped: /metrics answers with the last queue depths and their age, /readyz says 503 and why, /healthz 200', async () => {
    const own = await startRedis();
    const connection = connectRedis(own.url);
    connection.on('error', () => undefined);
    const queue = new Queue('stage-little', { connection, prefix: uniquePrefix('down') });
    // Redis is stopped on purpose: its reconnection errors are expected.
    queue.on('error', () => undefined);
    let clock = 1_700_000_000_000;
    const m = new CascadeMetrics({ queues: () => [{ name: 'stage-little', queue }], now: () => clock, processMetrics: true });
    const health = new WorkerHealth(connection);
    const server = await serveMetrics(m, 0, '127.0.0.1', { readiness: () => health.check() });
    const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`, { signal: AbortSignal.timeout(10_000) });
    try {
      await queue.addBulk([1, 2, 3].map((i) => ({ name: 'batch', data: { i } })));
      let text = await (await get('/metrics')).text();
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'waiting' })).toBe(3);
      expect(text).toMatch(/^cascade_redis_up 1$/m);
      expect(text).toMatch(/^cascade_redis_read_age_seconds 0$/m);
      // Models not opened yet: not ready, though Redis answers.
      let ready = await get('/readyz');
      expect([ready.status, await ready.text()]).toEqual([503, 'not ready: loading the models of the runs in flight\n']);
      health.modelsReady();
      ready = await get('/readyz');
      expect([ready.status, await ready.text()]).toEqual([200, 'ready\n']);

      await own.stop();
      clock += 42_000;
      // Before the deadline on Redis reads this request hung for as long as Redis was down (the
      // abort above fails the test then); now it is served from the last values read.
      const res = await get('/metrics');
      expect(res.status).toBe(200);
      text = await res.text();
      expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-little', state: 'waiting' })).toBe(3);
      expect(text).toMatch(/^cascade_redis_up 0$/m);
      expect(text).toMatch(/^cascade_redis_read_age_seconds 42$/m);
      expect(text).toMatch(/^process_cpu_seconds_total \d/m);
      // A second scrape while the first read is still pending starts no other read and ages on.
      clock += 8_000;
      expect(await (await get('/metrics')).text()).toMatch(/^cascade_redis_read_age_seconds 50$/m);
      ready = await get('/readyz');
      expect(ready.status).toBe(503);
      expect(await ready.text()).toMatch(/^not ready: redis (connecting|reconnecting|close|end)\n$/);
      expect([(await get('/healthz')).status]).toEqual([200]);
      health.stop();
      expect(await (await get('/readyz')).text()).toMatch(/^not ready: stopping; redis /);
    } finally {
      await server.close();
      connection.disconnect();
    }
  });

  it('ages from the start when Redis was never read', async () => {
    const own = await startRedis();
    const connection = connectRedis(own.url);
    connection.on('error', () => undefined);
    await own.stop();
    let clock = 5_000;
    const queue = new Queue('stage-big', { connection, prefix: uniquePrefix('never') });
    queue.on('error', () => undefined);
    const m = new CascadeMetrics({ queues: () => [{ name: 'stage-big', queue }], now: () => clock, redisDeadlineMs: 50 });
    clock += 7_000;
    const text = await m.text();
    expect(text).toMatch(/^cascade_redis_read_age_seconds 7$/m);
    expect(text).toMatch(/^cascade_redis_up 0$/m);
    expect(sample(text, 'cascade_queue_jobs', { queue: 'stage-big', state: 'waiting' })).toBeUndefined();
    connection.disconnect();
  });

  it('readiness waits for the models of the runs in flight; schedules report their last merged run and firing outcomes', async () => {
    const prefix = uniquePrefix('ready');
    const spec = (path: string) => colourSpec(path, models.labels);
    const config = await loadConfig({
      overrides: { little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 2, prefix, redisUrl: redis.url },
    });
    // No stage roles: the run stays in flight, as for a worker starting while batches wait.
    const planner = await startRuntime(config, redis.url, [], () => undefined);
    const runtime = await startRuntime(config, redis.url, [], () => undefined);
    const schedules = new Queue(SCHEDULES_QUEUE, { connection: runtime.redis, prefix });
    try {
      const run = await planRun(config, `${dir}/none/`, `${dir}/out-ready/`, planner.models, 'ready-1');
      expect(await planner.tracker.create(run)).toBe(true);
      const warnings: string[] = [];
      const opened = await openRunModels({ tracker: runtime.tracker, models: runtime.models, stages: ['big'], limit: 4, log: (msg) => warnings.push(msg) });
      expect([opened, warnings]).toEqual([1, []]);
      // The run's big model is open now: borrowing it for the run loads nothing.
      const lease = await runtime.models.acquire('big', run.stages[1]!.model, run.numerics, run.probeTolerance, run.runId);
      lease.release();

      // Two firings of `nightly`: the newest merged one is the last success; another schedule's run is not counted.
      const tracker = new RunTracker(runtime.redis, prefix);
      const { runId: _r, source: _s, out: _o, createdAt: _c, ...template } = run;
      await upsertSchedule(schedules, { every: 3_600_000 }, { schedule: 'nightly', source: 'x', out: 'y', extensions: ['.png'], run: template });
      for (const [id, mergedAt] of [
        ['nightly-1767225600000', '2026-01-01T00:00:00.000Z'],
        ['nightly-1767312000000', '2026-01-02T00:00:00.000Z'],
        ['nightly-1767398400000', null],
        ['other-1767484800000', '2026-01-03T00:00:00.000Z'],
      ] as const) {
        await tracker.create({ ...run, runId: id });
        if (mergedAt) {
          await tracker.markMerged(id, '{}');
          await runtime.redis.hset(`${prefix}:run:${id}`, 'mergedAt', mergedAt);
        }
      }
      expect(await lastScheduleSuccesses(schedules, tracker)).toEqual({ nightly: Date.parse('2026-01-02T00:00:00.000Z') });
      expect([scheduleOfRun('nightly-1767225600000'), scheduleOfRun('a-b-1767225600000'), scheduleOfRun('batch-7'), scheduleOfRun('7c536d02e2f61a2b')]).toEqual(
        ['nightly', 'a-b', undefined, undefined],
      );
      const m = new CascadeMetrics({ scheduleSuccesses: () => lastScheduleSuccesses(schedules, tracker) });
      m.onFiring('nightly', 'submitted');
      m.onFiring('nightly', 'submitted');
      m.onFiring('nightly', 'failed');
      const text = await m.text();
      expect(sample(text, 'cascade_schedule_last_success_timestamp_seconds', { schedule: 'nightly' })).toBe(Date.parse('2026-01-02T00:00:00.000Z') / 1000);
      expect(sample(text, 'cascade_schedule_runs_total', { schedule: 'nightly', outcome: 'submitted' })).toBe(2);
      expect(sample(text, 'cascade_schedule_runs_total', { schedule: 'nightly', outcome: 'failed' })).toBe(1);
    } finally {
      await schedules.close();
      await Promise.all([planner.close(), runtime.close()]);
    }
  });
});
