/**
 * --overwrite onto the output of a run still in flight (issue 24, item 5): the new run takes the
 * location, the old run is marked failed ("fenced"), its workers write nothing more there (its
 * queued batches fail for good at their first write), and `verify` flags any part of another run
 * found among the new run's. Real redis-server, real workers, generated models.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import type { CascadeConfig } from '../../config/schema.js';
import { ResultPart } from '../../pipeline/results/manifest.js';
import { verifyProvenance } from '../../pipeline/results/verify-provenance.js';
import { listSource } from '../../producers/list-source.js';
import { planRun } from '../../producers/plan-run.js';
import { submitRun } from '../../producers/submit-run.js';
import { stageQueueName } from '../../queue/jobs.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { colourSpec, writeAlternatingImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { Queue } from 'bullmq';

const N = 8;
const work = withTempDir('fencing');
const redis = withRedis();
const models = withModels(work);
let images: string;

beforeAll(async () => {
  images = join(work.path, 'images');
  await writeAlternatingImages(images, N);
});

async function config(prefix: string, threshold: number): Promise<CascadeConfig> {
  return loadConfig({
    overrides: {
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      threshold,
      batchSize: 2,
      redisUrl: redis.url,
      prefix,
      sources: { localRoots: [work.path] },
    },
    env: {},
  });
}

describe('--overwrite fences the run it takes the output from', () => {
  it('the old run writes nothing more, is marked failed, and the new run verifies clean', async () => {
    const prefix = uniquePrefix('fence');
    const out = join(work.path, 'out');
    const oldConfig = await config(prefix, 0.9);
    // Submitted with no worker running: its batches wait in the queue, a run in flight.
    const planner = await startRuntime(oldConfig, redis.url, [], () => {});
    let oldId: string;
    try {
      const submit = async (c: CascadeConfig, runId: string, overwrite: boolean) => {
        const spec = await planRun(c, images, out, planner.models, runId);
        await submitRun({
          spec,
          refs: listSource(images, { extensions: c.extensions }),
          tracker: planner.tracker,
          queues: planner.queues,
          output: planner.openOutput(out),
          overwrite,
        });
        return spec;
      };
      oldId = (await submit(oldConfig, 'fence-old', false)).runId;
      await submit(await config(prefix, 0.5), 'fence-new', true);
      expect((await planner.tracker.progress(oldId))?.failedReason).toMatch(/^fenced: its output location was taken over by run fence-new \(--overwrite\)$/);
    } finally {
      await planner.close();
    }

    const logs: string[] = [];
    const rt = await startRuntime(oldConfig, redis.url, ['little', 'big', 'merge'], (m) => logs.push(m));
    try {
      const summary = await waitForRun(rt.tracker, 'fence-new', () => {});
      expect(summary.images).toBe(N);
      // The old run's batches fail for good at their first write: none retried, none written.
      const queue = new Queue(stageQueueName('little'), { connection: rt.redis.duplicate(), prefix });
      try {
        for (let i = 0; i < 100; i++) {
          const failed = await queue.getFailed();
          if (failed.filter((j) => j.data.runId === oldId).length === N / 2) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const failed = (await queue.getFailed()).filter((j) => j.data.runId === oldId);
        expect(failed).toHaveLength(N / 2);
        for (const j of failed) {
          expect(j.attemptsMade).toBe(1);
          expect(j.failedReason).toMatch(/run fence-old no longer owns .*: run fence-new took it over \(--overwrite\)/);
        }
      } finally {
        await queue.close();
      }
      const parts = await Promise.all(
        (await readdir(join(out, 'parts'))).map(async (f) => ResultPart.parse(JSON.parse(await readFile(join(out, 'parts', f), 'utf8')))),
      );
      expect(new Set(parts.map((p) => p.runId))).toEqual(new Set(['fence-new']));
      expect(await verifyProvenance(rt.openOutput(out))).toMatchObject({ ok: true, foreign: 0 });

      // A part of the old run written in the instant before the takeover is flagged by verify.
      const stray: ResultPart = { ...parts[0]!, runId: oldId! };
      await writeFile(join(out, 'parts', '00000099.stage0.json'), JSON.stringify(stray));
      const report = await verifyProvenance(rt.openOutput(out));
      expect(report).toMatchObject({ ok: false, foreign: 1 });
      expect(report?.mismatched[0]?.reason).toMatch(/written by run fence-old, not this run \(fence-new\)/);
    } finally {
      await rt.close();
    }
  });
});
