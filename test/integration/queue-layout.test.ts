/**
 * A run's queue layout (`queues.shards`) is stored with it: every process queues the run's jobs
 * by the stored count, a `cascade worker` configured with another count refuses (exit 2) instead
 * of leaving the run waiting without a word, a running one logs the run once, and `cascade
 * status` shows the mismatch. Real redis-server, the built CLI, generated colour models.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { statusCommand } from '../../cli/commands/status.js';
import { submitCommand } from '../../cli/commands/submit.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { stageQueuePlace } from '../../queue/queue-shards.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { QueueLayoutWatch } from '../../workers/queue-layout-watch.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { colourCascade } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

const work = withTempDir('queue-layout');
const redis = withRedis();
const models = withModels(work);
const N = 7;
const BATCH = 2;
let images: string;

/** A config file under `prefix` with `shards` queues per stage, reading the test's images. */
async function configFile(name: string, prefix: string, shards: number): Promise<string> {
  const file = join(work.path, `${name}.json`);
  const settings = { batchSize: BATCH, redisUrl: redis.url, prefix, queues: { shards }, sources: { localRoots: [images] } };
  await writeFile(file, JSON.stringify(colourCascade(models, settings)));
  return file;
}

/** Jobs waiting in each of the `shards` queues of stage little under `prefix`. */
async function waitingPerShard(connection: ReturnType<typeof connectRedis>, prefix: string, shards: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: shards }, async (_, k) => {
      const place = stageQueuePlace(prefix, 'little', k, shards);
      const queue = new Queue(place.name, { connection, prefix: place.prefix });
      try {
        return await queue.getWaitingCount();
      } finally {
        await queue.close();
      }
    }),
  );
}

beforeAll(async () => {
  images = join(work.path, 'images');
  await mkdir(images);
  for (let i = 0; i < N; i++)
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: i * 30 } } })
      .png()
      .toFile(join(images, `${i}.png`));
});

describe('queue layout stored with the run', () => {
  it('the spec keeps the submitted shard count; a resubmission or a process with another config queues the run’s jobs on it', async () => {
    const prefix = uniquePrefix('layout-spec');
    const three = await configFile('spec-3', prefix, 3);
    const one = await configFile('spec-1', prefix, 1);
    const out = join(work.path, 'out-spec');
    await submitCommand(images, { out, config: three, runId: 'lay-spec' }, () => {});
    const connection = connectRedis(redis.url);
    let queues: CascadeQueues | undefined;
    try {
      expect((await new RunTracker(connection, prefix).spec('lay-spec'))?.queueShards).toBe(3);
      // 4 batches: 0 and 3 on shard 0, 1 on shard 1, 2 on shard 2.
      expect(await waitingPerShard(connection, prefix, 3)).toEqual([2, 1, 1]);
      const again = await submitCommand(images, { out, config: one, runId: 'lay-spec' }, () => {});
      expect(again.alreadySubmitted).toBe(true);
      expect(await waitingPerShard(connection, prefix, 1)).toEqual([0]);
      // A process configured with 1 (a merge worker listing a run's rest, a forwarding stage) queues a 3-shard run's jobs on its 3.
      const tracker = new RunTracker(connection, prefix);
      const spec = { ...(await tracker.spec('lay-spec'))!, runId: 'lay-spec-2', out: join(work.path, 'out-spec-2') };
      const refs = (async function* () {
        for (let i = 0; i < N; i++) yield join(images, `${i}.png`);
      })();
      queues = new CascadeQueues(connection, prefix, 1);
      await submitRun({ spec, refs, tracker, queues, output: null });
      expect(await waitingPerShard(connection, prefix, 3)).toEqual([4, 2, 2]);
      expect(await waitingPerShard(connection, prefix, 1)).toEqual([0]);
    } finally {
      await queues?.close();
      connection.disconnect();
    }
  });

  it('a worker with another shard count refuses with one line (exit 2), status shows why; a worker with the run’s count drains it', async () => {
    const prefix = uniquePrefix('layout-worker');
    const three = await configFile('worker-3', prefix, 3);
    const one = await configFile('worker-1', prefix, 1);
    await submitCommand(images, { out: join(work.path, 'out-worker'), config: three, runId: 'lay-run' }, () => {});
    const line =
      /run lay-run was submitted with queues\.shards 3, but this config has queues\.shards 1: workers with 1 never read its batches; use queues\.shards: 3/;

    const wrong = spawnCascade(['worker', 'little', 'big', 'merge', '--config', one], { REDIS_URL: '' });
    expect((await wrong.exited).code).toBe(2);
    expect(wrong.output()).toMatch(new RegExp(`cascade: ${line.source}`));

    const shown: string[] = [];
    await statusCommand('lay-run', { config: one }, (t) => shown.push(t));
    expect(shown.join('')).toMatch(new RegExp(`QUEUE LAYOUT: ${line.source}`));
    await statusCommand(undefined, { config: one }, (t) => shown.push(t));
    expect(shown[1]).toMatch(new RegExp(`\\nQUEUE LAYOUT: ${line.source}`));
    // The run's own layout is no mismatch.
    const right: string[] = [];
    await statusCommand('lay-run', { config: three }, (t) => right.push(t));
    expect(right.join('')).not.toMatch(/QUEUE LAYOUT/);

    const worker = spawnCascade(['worker', 'little', 'big', 'merge', '--config', three], { REDIS_URL: '' });
    const connection = connectRedis(redis.url);
    try {
      const summary = await waitForRun(new RunTracker(connection, prefix), 'lay-run', () => {}, 100);
      expect(summary.images).toBe(N);
    } finally {
      connection.disconnect();
      expect((await worker.stop()).code).toBe(0);
    }
  });

  it('a running worker logs one error line per run submitted later on another layout, and none for runs on its own', async () => {
    const prefix = uniquePrefix('layout-watch');
    const connection = connectRedis(redis.url);
    const logged: Array<{ msg: string; level?: string }> = [];
    const watch = new QueueLayoutWatch({
      tracker: new RunTracker(connection, prefix),
      shards: 1,
      log: (msg, f) => logged.push({ msg, level: f?.level }),
      intervalMs: 50,
    });
    try {
      expect(await watch.newMismatches()).toEqual([]);
      watch.start();
      await submitCommand(images, { out: join(work.path, 'out-watch-1'), config: await configFile('watch-1', prefix, 1), runId: 'lay-ok' }, () => {});
      await submitCommand(images, { out: join(work.path, 'out-watch-3'), config: await configFile('watch-3', prefix, 3), runId: 'lay-late' }, () => {});
      for (let i = 0; i < 100 && logged.length === 0; i++) await sleep(50);
      await sleep(300); // several more looks: still one line
      expect(logged).toEqual([
        { msg: expect.stringMatching(/^run lay-late was submitted with queues\.shards 3, but this config has queues\.shards 1/), level: 'error' },
      ]);
    } finally {
      await watch.stop();
      connection.disconnect();
    }
  });
});
