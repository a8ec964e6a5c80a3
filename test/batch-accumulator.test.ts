/**
 * Batch accumulation for models with a dynamic batch dimension: concurrent small requests
 * become one inference call and every caller still gets exactly its own rows. Real
 * onnxruntime sessions on the generated colour models (outputs known exactly), real
 * redis-server for the pipeline case.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForRun } from '../queue/wait-for-run.js';
import { loadConfig } from '../config/load-config.js';
import { InferencePool } from '../pipeline/inference/inference-pool.js';
import { ManifestRow } from '../pipeline/results/manifest.js';
import { listSource } from '../producers/list-source.js';
import { submitRun } from '../producers/submit-run.js';
import { defaultIntraOpThreads, startRuntime } from '../workers/cascade-runtime.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { expectedBigProbs, writeTestModels, type TestModels } from './helpers/test-models.js';
import { planRun } from '../producers/plan-run.js';

let dir: string;
let models: TestModels;
let redis: TestRedis;

const POOL = { executionProviders: ['cpu'] as const, intraOpThreads: 1, threads: 1, output: 'probabilities' as const, graphOptimization: 'all' as const };

/** n 8×8 images of uniform colour (r, g, b in [0, 1]), stacked CHW. */
function uniform(colours: Array<[number, number, number]>): Float32Array {
  const out = new Float32Array(colours.length * 3 * 64);
  colours.forEach((rgb, i) => rgb.forEach((v, c) => out.fill(v, (i * 3 + c) * 64, (i * 3 + c + 1) * 64)));
  return out;
}

function expectRows(probs: Float32Array, colours: Array<[number, number, number]>) {
  expect(probs.length).toBe(colours.length * 4);
  colours.forEach(([r, g, b], i) => {
    const want = expectedBigProbs(r, g, b);
    for (let k = 0; k < 4; k++) expect(probs[i * 4 + k]).toBeCloseTo(want[k]!, 5);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-accumulate-'));
  models = await writeTestModels(join(dir, 'models'));
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('batch accumulator in the inference pool', () => {
  it('stacks concurrent requests into one call; each caller gets its own exact rows', async () => {
    // A wait far beyond the test's run time: the batch goes out only because it is full.
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8, accumulateMs: 60_000 });
    try {
      const requests: Array<Array<[number, number, number]>> = [
        [[1, 0, 0], [0, 1, 0]],
        [[0, 0, 1], [0.5, 0.5, 0.5]],
        [[0.2, 0.4, 0.6], [0, 0, 0]],
        [[1, 1, 1], [0.9, 0.1, 0.3]],
      ];
      const results = await Promise.all(requests.map((colours) => pool.infer(uniform(colours), colours.length)));
      expect(pool.accumulator!.calls).toEqual([8]);
      results.forEach((r, i) => expectRows(r.probs, requests[i]!));
    } finally {
      await pool.close();
    }
  });

  it('sends the gathered batch first when a request would overflow it, and a partial batch after the wait', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8, accumulateMs: 5 });
    try {
      const requests: Array<Array<[number, number, number]>> = [
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0.3, 0.3, 0.3], [0.7, 0.2, 0.1], [0, 0.5, 1]],
        [[0.1, 0.9, 0.1], [1, 0, 1], [0.25, 0.5, 0.75]],
      ];
      const results = await Promise.all(requests.map((colours) => pool.infer(uniform(colours), colours.length)));
      expect(pool.accumulator!.calls).toEqual([6, 3]);
      results.forEach((r, i) => expectRows(r.probs, requests[i]!));
    } finally {
      await pool.close();
    }
  });

  it('a failing call fails every request stacked into it', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 4, accumulateMs: 60_000 });
    try {
      const good = pool.infer(uniform([[1, 0, 0], [0, 1, 0]]), 2);
      // Claims two images but holds one: the stacked batch no longer matches its count.
      const bad = pool.infer(uniform([[0, 0, 1]]), 2);
      await expect(good).rejects.toThrow(/expected 4×192/);
      await expect(bad).rejects.toThrow(/expected 4×192/);
    } finally {
      await pool.close();
    }
  });

  it('is off by default on the CPU provider, where it measured slower', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8 });
    try {
      expect(pool.provider).toBe('cpu');
      expect(pool.accumulator).toBeNull();
    } finally {
      await pool.close();
    }
  });

  it('is off for a model with a fixed batch size', async () => {
    const pool = await InferencePool.open(models.colourLittle, { ...POOL, output: 'logits', maxBatch: 8, accumulateMs: 20 });
    try {
      expect(pool.accumulator).toBeNull();
    } finally {
      await pool.close();
    }
  });
});

describe('batch accumulation in the pipeline', () => {
  it('small forwarded jobs share one big-model call; routing and answers stay exact', async () => {
    // Batches of 3 (listing order): two greys for big and one red the little model accepts.
    const images = join(dir, 'images');
    const greys = [16, 48, 80, 112, 144, 176, 208, 240];
    const names: Array<{ name: string; grey: number | null }> = [];
    for (let b = 0; b < 4; b++) {
      names.push({ name: `b${b}-0-grey.png`, grey: greys[2 * b]! }, { name: `b${b}-1-grey.png`, grey: greys[2 * b + 1]! }, { name: `b${b}-2-red.png`, grey: null });
    }
    await mkdir(images, { recursive: true });
    for (const { name, grey } of names) {
      const background = grey === null ? { r: 255, g: 0, b: 0 } : { r: grey, g: grey, b: grey };
      await writeFile(join(images, name), await sharp({ create: { width: 8, height: 8, channels: 3, background } }).png().toBuffer());
    }
    const spec = (path: string, maxBatch?: number) => ({ path, labels: models.labels, maxBatch, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
    // maxBatch = all eight routed images and a wait longer than the test: one call, once all four jobs are in.
    const config = await loadConfig({ overrides: { little: spec(models.colourLittle), big: spec(models.colourBig, 8), threshold: 0.9, batchSize: 3, accumulateMs: 60_000, accumulateJobs: 4, prefix: 'acc' } });
    const runtime = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
    try {
      const out = join(dir, 'out');
      const run = await planRun(config, images, out, runtime.models, 'acc-1');
      await submitRun({ spec: run, refs: listSource(images, { extensions: config.extensions }), tracker: runtime.tracker, queues: runtime.queues });
      const summary = await waitForRun(runtime.tracker, 'acc-1', () => {});
      expect(summary.stages[0]).toMatchObject({ images: 12, accepted: 4, forwarded: 8, errors: 0 });
      expect(summary.stages[1]).toMatchObject({ images: 8, accepted: 8, errors: 0 });
      const big = await runtime.models.acquireUnverified('big', run.stages[1]!.model, run.numerics);
      expect(big.model.pool.accumulator!.calls).toEqual([8]);
      big.release();
      const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n').map((l) => ManifestRow.parse(JSON.parse(l)));
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

describe('default thread sizing', () => {
  it('shares the cores among the stages a process serves', () => {
    expect(defaultIntraOpThreads(2, 2)).toBe(1);
    expect(defaultIntraOpThreads(1, 2)).toBe(2);
    expect(defaultIntraOpThreads(2, 16)).toBe(8);
    expect(defaultIntraOpThreads(3, 2)).toBe(1);
  });
});
