/**
 * `cascade status` against a real redis-server holding tracker state and queued batches of two
 * runs whose ids share a prefix (the maths and text: unit/status-format.test.ts), and the exit
 * codes of `cascade status --watch` (the built CLI, a child process) for a run that is done or
 * has failed.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { UnrecoverableError, Worker } from 'bullmq';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statusCommand } from '../../cli/commands/status.js';
import { RunStatus } from '../../cli/format-status.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { resumableSource } from '../../producers/inputs/input-formats.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { stageQueueName } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { statusRunSpec } from '../helpers/run-spec.js';
import { sampleMembers, tarShard } from '../helpers/shard-fixture.js';

const spec = statusRunSpec;

describe('cascade status against Redis', () => {
  let redis: TestRedis;
  let dir: string;
  let config: string;
  const prefix = uniquePrefix('status');

  beforeAll(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'cascade-status-'));
    config = join(dir, 'cascade.yaml');
    await writeFile(config, `redisUrl: ${redis.url}\nprefix: ${prefix}\nlittle: ignored-by-status.onnx\n`);
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    try {
      // Run "st": 3 batches queued on little, one forwarded batch on big. Run "st-1" (its id
      // starts with "st-") has 2 queued batches that must not count for "st".
      await tracker.create(spec('st'));
      await tracker.finishListing('st', 25, 3);
      await queues.addStageJobs(
        'little',
        [0, 1, 2].map((batch) => ({ runId: 'st', batch, stage: 0, items: [{ ref: 'a.png', pos: 0 }] })),
      );
      await queues.addStageJobs('big', [{ runId: 'st', batch: 7, stage: 1, items: [{ ref: 'b.png', pos: 3 }] }]);
      await tracker.finishPart('st', { id: 'b7s0', stage: 0, final: 9, counts: { images: 10, accepted: 9, forwarded: 1, errors: 0 } });
      await tracker.create({ ...spec('st-1'), out: 's3://out/st-1/' });
      await tracker.finishListing('st-1', 20, 2);
      await queues.addStageJobs(
        'little',
        [0, 1].map((batch) => ({ runId: 'st-1', batch, stage: 0, items: [{ ref: 'c.png', pos: 0 }] })),
      );
      await tracker.markMerged('st-1', '{}');
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });

  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('--json: per-stage batches of this run only, and image counts from the tracker', async () => {
    const out: string[] = [];
    const status = (await statusCommand('st', { config, json: true }, (t) => out.push(t))) as RunStatus;
    expect(RunStatus.parse(JSON.parse(out.join('')))).toEqual(status);
    expect(status).toMatchObject({ runId: 'st', state: 'running', total: 25, done: 9 });
    expect(status.stages.map((s) => [s.name, s.queued, s.active, s.done, s.routed, s.pending])).toEqual([
      ['little', 3, 0, 10, 1, 15],
      ['big', 1, 0, 0, 0, 1],
    ]);
  });

  it('text, the run list, --watch on a finished run, and an unknown run', async () => {
    const out: string[] = [];
    const write = (t: string) => out.push(t);
    await statusCommand('st', { config }, write);
    expect(out.join('')).toMatch(/run st {2}running/);
    out.length = 0;
    const runs = (await statusCommand(undefined, { config, json: true }, write)) as RunStatus[];
    expect(runs.map((r) => r.runId).sort()).toEqual(['st', 'st-1']);
    out.length = 0;
    await statusCommand(undefined, { config }, write);
    expect(out.join('')).toMatch(/^st-1\s+done\s+0\/20/m);
    out.length = 0;
    // A finished run is drawn once and --watch returns.
    await statusCommand('st-1', { config, watch: true, interval: 0.1 }, write);
    expect(out).toHaveLength(1);
    await expect(statusCommand('nope', { config }, write)).rejects.toThrow(`run nope is unknown to prefix ${prefix}`);
  });

  it('a sharded run listing under a byte budget: where its shard cursor stands and the bytes held, in the text and --json', async () => {
    // Four tar shards of 5 samples: the budget holds a few 2-sample batches, so the listing stops before the last shard's end.
    const shards = join(dir, 'shards');
    await mkdir(shards);
    for (let k = 0; k < 4; k++) {
      const members = [0, 1, 2, 3, 4].flatMap((i) => sampleMembers(`s${k}-${i}`, 'png', Buffer.from(`not decoded ${k}-${i}`)));
      await writeFile(join(shards, `00000${k}.tar`), await tarShard(members));
    }
    const windowed = uniquePrefix('status-window');
    const windowedConfig = join(dir, 'windowed.yaml');
    await writeFile(windowedConfig, `redisUrl: ${redis.url}\nprefix: ${windowed}\n`);
    const source = join(shards, '{000000..000003}.tar');
    const budget = 1000;
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, windowed);
    const queues = new CascadeQueues(connection, windowed);
    try {
      const refs = resumableSource({ source, extensions: ['.png'] }, new Stores());
      const submitted = await submitRun({
        spec: { ...spec('sw'), source, batchSize: 2 },
        refs,
        window: 100,
        windowBytes: budget,
        tracker,
        queues,
        output: null,
      });
      expect(submitted.listing).toBe('continues');
      const state = (await tracker.listingState('sw'))!;
      const cursor = JSON.parse(state.cursor!) as { kind: string; shard: number; name: string; sample: number };
      // The budget stopped the listing before the last shard's end.
      expect(cursor).toMatchObject({ kind: 'shard', name: join(shards, `00000${cursor.shard}.tar`) });
      expect(cursor.shard).toBeLessThan(3);
      expect(state.bytesInFlight).toBeGreaterThan(0);
      expect(state.bytesInFlight).toBeLessThanOrEqual(budget);
      const at = `shard ${cursor.shard + 1} of 4 (00000${cursor.shard}.tar), ${cursor.sample} samples in`;
      const out: string[] = [];
      const status = (await statusCommand('sw', { config: windowedConfig, json: true }, (t) => out.push(t))) as RunStatus;
      expect(RunStatus.parse(JSON.parse(out.join('')))).toEqual(status);
      expect(status).toMatchObject({ state: 'listing', window: 100, windowBytes: budget, bytesInFlight: state.bytesInFlight, listingAt: at });
      out.length = 0;
      await statusCommand('sw', { config: windowedConfig }, (t) => out.push(t));
      expect(out.join('')).toContain(
        `  listed ${state.images} so far  queued ${state.images}  done 0  (window 100 batches)\n  listing: ${at}  bytes in flight ${state.bytesInFlight} B of 1000 B\n`,
      );
      const [listed] = (await statusCommand(undefined, { config: windowedConfig, json: true }, () => {})) as RunStatus[];
      expect(listed).toMatchObject({ runId: 'sw', listingAt: at, windowBytes: budget });
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });
});

describe('cascade status --watch exit codes', () => {
  let redis: TestRedis;
  let dir: string;
  let config: string;
  const prefix = uniquePrefix('watch');

  /** `cascade status <runId> --watch` as a child process: its exit code and output. */
  async function watch(runId: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const args = ['bin/cascade.js', 'status', runId, '--watch', '--interval', '0.1', '--config', config];
    return promisify(execFile)(process.execPath, args, { timeout: 30_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );
  }

  beforeAll(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'cascade-watch-'));
    config = join(dir, 'cascade.yaml');
    await writeFile(config, `redisUrl: ${redis.url}\nprefix: ${prefix}\n`);
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    // A worker whose every job fails for good at once: run w-stuck's only batch ends in 'failed'.
    const failing = new Worker(
      stageQueueName('little'),
      async () => {
        throw new UnrecoverableError('EACCES: permission denied, open /out/parts/b0s0.jsonl');
      },
      { connection: connectRedis(redis.url, { maxRetriesPerRequest: null }), prefix },
    );
    try {
      await tracker.create(spec('w-done'));
      await tracker.finishListing('w-done', 10, 1);
      await tracker.markMerged('w-done', '{}');
      await tracker.create(spec('w-merge'));
      await tracker.finishListing('w-merge', 10, 1);
      await tracker.markMergeFailed('w-merge', 'ENOSPC: no space left on device, write');
      await tracker.create(spec('w-stuck'));
      await tracker.finishListing('w-stuck', 10, 1);
      const failed = new Promise<void>((resolve) => failing.once('failed', () => resolve()));
      await queues.addStageJobs('little', [{ runId: 'w-stuck', batch: 0, stage: 0, items: [{ ref: 'a.png', pos: 0 }] }]);
      await failed;
    } finally {
      await failing.close();
      await queues.close();
      connection.disconnect();
    }
  });

  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 0 once the run is done', async () => {
    const r = await watch('w-done');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/run w-done {2}done/);
    expect(r.stderr).toBe('');
  });

  it('exits 1 when its merge failed for good', async () => {
    const r = await watch('w-merge');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/run w-merge {2}failed .*merge failed: ENOSPC/s);
  });

  it('exits 1 when its batches failed for good and nothing else is left, naming them and the retry line', async () => {
    const r = await watch('w-stuck');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^cascade: run w-stuck failed: 1 batch\(es\) failed for good after their retries\n/);
    expect(r.stderr).toMatch(/first error \(w-stuck-b0-\S+\): EACCES: permission denied/);
    expect(r.stderr).toMatch(/once the cause is fixed: cascade retry w-stuck\n$/);
  });
});
