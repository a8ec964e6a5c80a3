/**
 * `cascade retry`: a run whose output location cannot be written fails its jobs for good (all
 * attempts used) and stalls; once the location is fixed, retrying its failed jobs completes it
 * with every image exactly once. Real redis-server, real workers, generated models.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { retryCommand } from '../../cli/commands/retry.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { loadConfig } from '../../config/load-config.js';
import { planRun } from '../../producers/plan-run.js';
import { listSource } from '../../producers/list-source.js';
import { submitRun } from '../../producers/submit-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { readRunStatus } from '../../cli/commands/status.js';
import { formatRunStatus } from '../../cli/format-status.js';
import { statusCommand } from '../../cli/commands/status.js';
import { startDashboard } from '../../cli/commands/dashboard.js';
import { RunView } from '../../queue/run-view.js';
import { DEFAULT_OUTPUT } from '../../config/schema.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { listingJobId } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { fakeRunSpec } from '../helpers/run-spec.js';

const work = withTempDir('retry');
const redis = withRedis();
const models = withModels(work);

beforeAll(async () => {
  await mkdir(join(work.path, 'images'));
  const colours: Array<[number, number, number]> = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [128, 128, 128],
    [64, 64, 64],
    [255, 0, 0],
  ];
  for (const [i, [r, g, b]] of colours.entries()) {
    await writeFile(
      join(work.path, 'images', `img-${i}.png`),
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer(),
    );
  }
});

describe('cascade retry', () => {
  it('completes a run whose jobs failed for good, once the output is writable', async () => {
    const model = (path: string) => colourSpec(path, models.labels);
    const prefix = uniquePrefix('rt');
    const config = await loadConfig({
      overrides: { little: model(models.colourLittle), big: model(models.colourBig), threshold: 0.9, batchSize: 2, redisUrl: redis.url, prefix },
      env: {},
    });
    const configFile = join(work.path, 'config.json');
    await writeFile(configFile, JSON.stringify({ redisUrl: redis.url, prefix }));
    // A file where the parts directory should be: the run claims its location, then every part write fails.
    const out = join(work.path, 'out');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'parts'), 'not a directory');

    const runtime = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
    try {
      const spec = await planRun(config, join(work.path, 'images'), out, runtime.models, 'retry-1');
      await submitRun({
        spec,
        refs: listSource(spec.source, { extensions: config.extensions }),
        tracker: runtime.tracker,
        queues: runtime.queues,
        output: runtime.openOutput(spec.out),
      });
      // 3 batches × 3 attempts. Jobs waiting out their backoff (1 s, 2 s) are promoted at once:
      // that they fail for good is tested here, not the backoff.
      const little = runtime.queues.stage('little');
      for (let i = 0; i < 200 && (await little.getFailedCount()) < 3; i++) {
        await little.promoteJobs();
        await sleep(100);
      }
      expect(await little.getFailedCount()).toBe(3);
      expect((await runtime.tracker.progress('retry-1'))?.mergedAt).toBeFalsy();
      // `cascade status` says why, and what to do.
      const status = (await readRunStatus(runtime.tracker, runtime.queues, 'retry-1'))!;
      expect(status.stages[0]).toMatchObject({ failed: 3, failedReason: expect.stringMatching(/ENOTDIR|EEXIST|not a directory/) });
      expect(formatRunStatus(status)).toContain('little: 3 batch(es) failed for good: ');
      expect(formatRunStatus(status)).toContain('fix the cause, then `cascade retry retry-1`');

      // Issue 24: every surface says failed, not running: the run view (`cascade status` list, --json) and the dashboard's Runs page.
      const listed = async () => {
        let text = '';
        await statusCommand(undefined, { config: configFile, json: true }, (t) => {
          text += t;
        });
        return RunView.array()
          .parse(JSON.parse(text))
          .find((v) => v.runId === 'retry-1')!;
      };
      let view = await listed();
      // The worker notes a job's final failure just after BullMQ moves it to the failed set.
      for (let i = 0; i < 50 && !/^3 job/.test(view.failedReason ?? ''); i++) {
        await sleep(100);
        view = await listed();
      }
      expect(view).toMatchObject({
        state: 'failed',
        etaSeconds: null,
        failedReason: expect.stringMatching(
          /^3 job\(s\) failed for good after their retries \(first retry-1-b\d+-s0: .*(ENOTDIR|EEXIST|not a directory).*\); fix the cause, then `cascade retry retry-1`$/,
        ),
      });
      let text = '';
      await statusCommand(undefined, { config: configFile }, (t) => {
        text += t;
      });
      expect(text).toMatch(/^retry-1\s+failed\s+0\/6\s/m);
      const dashboard = await startDashboard({ redisUrl: redis.url, prefix, port: 0 });
      try {
        const page = await (await fetch(`http://127.0.0.1:${dashboard.port}/runs`)).text();
        expect(page).toContain('<tr class="run" data-run="retry-1" data-state="failed" data-errors="0">');
        expect(page).toMatch(/<tr class="reason" data-state="failed">.*3 job\(s\) failed for good/);
      } finally {
        await dashboard.close();
      }

      await rm(join(out, 'parts'));
      const counts = await retryCommand('retry-1', { config: configFile, json: true });
      expect(counts).toEqual({ little: 3, big: 0, merge: 0 });
      // Back in their queues: no longer failed.
      expect((await listed()).state).not.toBe('failed');
      const summary = await waitForRun(runtime.tracker, 'retry-1', () => {});
      expect(summary.images).toBe(6);
      expect(summary.errors).toBe(0);
      expect(await listed()).toMatchObject({ state: 'done', done: 6 });
      expect(await listed()).not.toHaveProperty('failedReason');
      const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { key: string });
      expect(new Set(rows.map((r) => r.key)).size).toBe(6);
      expect(rows).toHaveLength(6);
      // Nothing failed is left, and retrying again finds nothing.
      expect(await retryCommand('retry-1', { config: configFile, json: true })).toEqual({ little: 0, big: 0, merge: 0 });
    } finally {
      await runtime.close();
    }
  });

  it('an unknown run is one clear error', async () => {
    const configFile = join(work.path, 'config2.json');
    const prefix = uniquePrefix('nothing-here');
    await writeFile(configFile, JSON.stringify({ redisUrl: redis.url, prefix }));
    await expect(retryCommand('nope', { config: configFile })).rejects.toThrow(`run nope is unknown to this Redis (prefix ${prefix})`);
  });

  it('queues the listing job of a listed run with manifest shards left, which stopped when a job failed for good; not for a run of one shard', async () => {
    const prefix = uniquePrefix('rtl');
    const configFile = join(work.path, 'config-listing.json');
    await writeFile(configFile, JSON.stringify({ redisUrl: redis.url, prefix }));
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    try {
      // 12 images in 3 batches of 4: 3 shards of 4 rows, or one shard by default. No worker runs.
      const runs = { 'rtl-3': { ...DEFAULT_OUTPUT, shardRows: 4 }, 'rtl-1': DEFAULT_OUTPUT };
      for (const [runId, output] of Object.entries(runs)) {
        await tracker.create(fakeRunSpec(runId, { output }));
        await tracker.finishListing(runId, 12, 3);
        await tracker.recordJobFailure(runId, `${runId}-b1-s0`, 'ENOTDIR');
        await retryCommand(runId, { config: configFile, json: true });
      }
      expect(await queues.listing.getJob(listingJobId('rtl-3'))).toBeDefined();
      expect(await queues.listing.getJob(listingJobId('rtl-1'))).toBeUndefined();
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });
});
