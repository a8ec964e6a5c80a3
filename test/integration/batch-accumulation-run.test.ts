/**
 * Batch accumulation in a whole run (real redis-server, generated colour models): small forwarded
 * jobs fill one big-model call and every image still gets exactly its own answer (the pool's
 * accumulator alone: unit/batch-accumulator.test.ts).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { listSource } from '../../producers/list-source.js';
import { planRun } from '../../producers/plan-run.js';
import { submitRun } from '../../producers/submit-run.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { uniquePrefix } from '../helpers/redis.js';
import { expectedBigProbs } from '../helpers/test-models.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';

const work = withTempDir('accumulate-run');
const redis = withRedis();
const models = withModels(work);

describe('batch accumulation in the pipeline', () => {
  it('small forwarded jobs share one big-model call; routing and answers stay exact', async () => {
    // Batches of 3 (listing order): two greys for big and one red the little model accepts.
    const images = join(work.path, 'images');
    const greys = [16, 48, 80, 112, 144, 176, 208, 240];
    const names: Array<{ name: string; grey: number | null }> = [];
    for (let b = 0; b < 4; b++) {
      names.push(
        { name: `b${b}-0-grey.png`, grey: greys[2 * b]! },
        { name: `b${b}-1-grey.png`, grey: greys[2 * b + 1]! },
        { name: `b${b}-2-red.png`, grey: null },
      );
    }
    await mkdir(images, { recursive: true });
    for (const { name, grey } of names) {
      const background = grey === null ? { r: 255, g: 0, b: 0 } : { r: grey, g: grey, b: grey };
      await writeFile(
        join(images, name),
        await sharp({ create: { width: 8, height: 8, channels: 3, background } })
          .png()
          .toBuffer(),
      );
    }
    const spec = (path: string, maxBatch?: number) => ({ ...colourSpec(path, models.labels), maxBatch });
    // maxBatch = all eight routed images and a wait longer than the test: one call, once all four jobs are in.
    const config = await loadConfig({
      overrides: {
        little: spec(models.colourLittle),
        big: spec(models.colourBig, 8),
        threshold: 0.9,
        batchSize: 3,
        accumulateMs: 60_000,
        accumulateJobs: 4,
        prefix: uniquePrefix('acc'),
      },
    });
    const runtime = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
    try {
      const out = join(work.path, 'out');
      const run = await planRun(config, images, out, runtime.models, 'acc-1');
      await submitRun({
        spec: run,
        refs: listSource(images, { extensions: config.extensions }),
        tracker: runtime.tracker,
        queues: runtime.queues,
        output: runtime.openOutput(run.out),
      });
      const summary = await waitForRun(runtime.tracker, 'acc-1', () => {});
      expect(summary.stages[0]).toMatchObject({ images: 12, accepted: 4, forwarded: 8, errors: 0 });
      expect(summary.stages[1]).toMatchObject({ images: 8, accepted: 8, errors: 0 });
      const big = await runtime.models.acquire('big', run.stages[1]!.model, run.numerics, run.probeTolerance, run.runId);
      expect(big.model.pool.accumulator!.calls).toEqual([8]);
      big.release();
      const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      for (const { name, grey } of names) {
        const row = rows.find((r) => r.key.endsWith(`/${name}`))!;
        if (grey === null) {
          expect(row).toMatchObject({ stage: 'little', labelName: 'red' });
          continue;
        }
        const v = grey / 255;
        const want = expectedBigProbs(v, v, v);
        expect(row.stage).toBe('big');
        expect(row.label).toBe(want.indexOf(Math.max(...want)));
        expect(row.confidence).toBeCloseTo(Math.max(...want), 5);
      }
    } finally {
      await runtime.close();
    }
  });
});
