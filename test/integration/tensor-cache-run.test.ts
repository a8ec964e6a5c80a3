/**
 * The tensor cache that lets the big stage skip fetching and decoding images the little stage
 * just preprocessed alike: whole runs (real redis-server, generated models) in which the big
 * stage reads nothing yet answers exactly as before (the cache alone: unit/tensor-cache.test.ts).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { waitForRun } from '../../queue/wait-for-run.js';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow, type RunSummary } from '../../pipeline/results/manifest.js';
import { listSource } from '../../producers/list-source.js';
import { submitRun } from '../../producers/submit-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { uniquePrefix } from '../helpers/redis.js';
import { expectedBigProbs } from '../helpers/test-models.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { planRun } from '../../producers/plan-run.js';

describe('tensor cache in a run', () => {
  const work = withTempDir('tcache');
  const redis = withRedis();
  const models = withModels(work);
  const GREYS = [0, 64, 96, 128, 160, 192];
  const REDS = 4;

  beforeAll(async () => {
    await mkdir(join(work.path, 'images'));
    for (const v of GREYS)
      await writeFile(
        join(work.path, 'images', `grey-${v}.png`),
        await sharp({ create: { width: 12, height: 10, channels: 3, background: { r: v, g: v, b: v } } })
          .png()
          .toBuffer(),
      );
    for (let i = 0; i < REDS; i++)
      await writeFile(
        join(work.path, 'images', `red-${i}.png`),
        await sharp({ create: { width: 12, height: 10, channels: 3, background: { r: 255, g: 0, b: 0 } } })
          .png()
          .toBuffer(),
      );
  });

  async function run(runId: string, bigKernel: 'nearest' | 'linear', tensorCacheMb: number): Promise<{ summary: RunSummary; rows: ManifestRow[] }> {
    const spec = (path: string, kernel: string) => ({
      path,
      labels: models.labels,
      preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel },
    });
    const config = await loadConfig({
      overrides: {
        little: spec(models.colourLittle, 'nearest'),
        big: spec(models.colourBig, bigKernel),
        threshold: 0.9,
        batchSize: 4,
        tensorCacheMb,
        prefix: uniquePrefix(runId),
      },
    });
    const runtime = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
    try {
      const out = join(work.path, runId);
      const images = join(work.path, 'images');
      const spec_ = await planRun(config, images, out, runtime.models, runId);
      await submitRun({
        spec: spec_,
        refs: listSource(images, { extensions: config.extensions }),
        tracker: runtime.tracker,
        queues: runtime.queues,
        output: runtime.openOutput(spec_.out),
      });
      const summary = await waitForRun(runtime.tracker, runId, () => {});
      const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      return { summary, rows };
    } finally {
      await runtime.close();
    }
  }

  function checkAnswers({ summary, rows }: { summary: RunSummary; rows: ManifestRow[] }) {
    expect(summary.stages[0]).toMatchObject({ images: GREYS.length + REDS, accepted: REDS, forwarded: GREYS.length });
    expect(summary.stages[1]).toMatchObject({ images: GREYS.length, accepted: GREYS.length, errors: 0 });
    for (const v of GREYS) {
      const row = rows.find((r) => r.key.endsWith(`/grey-${v}.png`))!;
      const want = expectedBigProbs(v / 255, v / 255, v / 255);
      expect(row).toMatchObject({ stage: 'big', label: want.indexOf(Math.max(...want)) });
      expect(row.confidence).toBeCloseTo(Math.max(...want), 5);
    }
  }

  it('the big stage neither fetches nor decodes images the little stage preprocessed alike', async () => {
    const result = await run('tc-same', 'nearest', 128);
    checkAnswers(result);
    expect(result.summary.stages[1]).toMatchObject({ fetchMs: 0, decodeMs: 0 });
  });

  it('preprocessing that differs misses the cache and fetches, answering the same', async () => {
    const result = await run('tc-diff', 'linear', 128);
    checkAnswers(result);
    expect(result.summary.stages[1]!.fetchMs + result.summary.stages[1]!.decodeMs).toBeGreaterThan(0);
  });

  it('tensorCacheMb 0 turns it off', async () => {
    const result = await run('tc-off', 'nearest', 0);
    checkAnswers(result);
    expect(result.summary.stages[1]!.fetchMs + result.summary.stages[1]!.decodeMs).toBeGreaterThan(0);
  });
});
