/**
 * Inference in chunks within a job (inferChunk): calls start while the rest of the batch still
 * decodes, and the stage's answers, forwards and errors are exactly those of one call per batch.
 * Real onnxruntime sessions on the generated colour model, real files.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreprocessSpec } from '../../config/schema.js';
import { classifyBatch, modelInput, type BatchItem } from '../../pipeline/classify-batch.js';
import { preprocessKey, TensorCache } from '../../pipeline/image/tensor-cache.js';
import type { StageModel } from '../../pipeline/models/loaded-model.js';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let pool: InferencePool;
const items: BatchItem[] = [];
const preprocess = PreprocessSpec.parse({ resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' });
// Saturated colours are accepted at 0.9, greys forwarded, two files are not images.
const COLOURS: Array<[number, number, number] | null> = [
  [255, 0, 0],
  [128, 128, 128],
  null,
  [0, 255, 0],
  [0, 0, 255],
  [64, 64, 64],
  null,
  [255, 0, 0],
  [200, 200, 200],
  [0, 0, 255],
];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-stream-'));
  const models = await writeTestModels(join(dir, 'models'));
  pool = await InferencePool.open(models.colourLittle, {
    executionProviders: ['cpu'],
    intraOpThreads: 1,
    threads: 1,
    output: 'logits',
    maxBatch: 32,
    graphOptimization: 'all',
  });
  for (const [pos, rgb] of COLOURS.entries()) {
    const ref = join(dir, `img-${pos}.png`);
    const bytes = rgb
      ? await sharp({ create: { width: 12, height: 10, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
          .png()
          .toBuffer()
      : Buffer.from('not an image');
    await writeFile(ref, bytes);
    items.push({ ref, pos });
  }
});

afterAll(async () => {
  await pool?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The stage model with every inference call's image count recorded (the calls still go to the real pool). */
function counted(sizes: number[], skew = 0): StageModel {
  const recording = Object.create(pool) as InferencePool;
  recording.infer = (data, n) => {
    sizes.push(n);
    return pool.infer(data, n + skew);
  };
  return { name: 'little', pool: recording, preprocess, labels: ['red', 'green', 'blue', 'other'] };
}

const deps = (inferChunk: number) => ({ fetch: (ref: string) => readFile(ref), maxPixels: 1e6, fetchConcurrency: 3, inferChunk });
const decision = { threshold: 0.9, metric: 'maxprob' as const };

describe('classifyBatch with inferChunk', () => {
  it('infers in chunks yet gives exactly the rows and forwards of one call', async () => {
    const whole: number[] = [];
    const chunked: number[] = [];
    const one = await classifyBatch(items, counted(whole), decision, deps(0));
    const many = await classifyBatch(items, counted(chunked), decision, deps(3));
    expect(whole).toEqual([8]);
    expect(chunked.reduce((a, b) => a + b, 0)).toBe(8);
    expect(chunked.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...chunked)).toBeLessThanOrEqual(3);
    expect(many.rows).toEqual(one.rows);
    expect(many.forward).toEqual(one.forward);
    expect(one.forward.map((f) => f.pos)).toEqual([1, 5, 8]);
    expect(one.rows.filter((r) => r.error).map((r) => r.pos)).toEqual([2, 6]);
    expect(many.stats).toMatchObject({ images: 10, accepted: 5, forwarded: 3, errors: 2 });
  });

  it('a warm-up stage whose answers go on keeps the tensor of every answered image for the next stage, as for a forwarded one', async () => {
    const preprocessed = preprocessKey(preprocess, modelInput(pool));
    const run = async (answersGoOn: boolean) => {
      const tensorCache = new TensorCache(2 ** 20);
      // The warm-up lane's first stage keeps every answer (threshold null); the run's next stage reads them back.
      const r = await classifyBatch(items, counted([]), { threshold: null, metric: 'maxprob', signals: true, answersGoOn }, { ...deps(0), tensorCache });
      return { rows: r.rows, kept: items.filter((i) => tensorCache.take(i.ref, preprocessed)).map((i) => i.pos) };
    };
    const warm = await run(true);
    const plain = await run(false);
    expect(warm.rows).toEqual(plain.rows);
    expect(warm.kept).toEqual([0, 1, 3, 4, 5, 7, 8, 9]);
    expect(plain.kept).toEqual([]);
  });

  it('a failed call fails the batch once every image is decoded', async () => {
    const sizes: number[] = [];
    // Each call claims one image more than it sends: the real session rejects the batch.
    await expect(classifyBatch(items, counted(sizes, 1), decision, deps(2))).rejects.toThrow(/batch holds/);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(8);
  });
});
