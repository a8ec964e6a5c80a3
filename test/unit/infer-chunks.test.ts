/**
 * The inference step on its own (a stand-in pool): stacking, position order, one outcome per
 * call with a failure confined to its chunk; then classifyBatch turning that one failed call
 * into `inference` rows for only its images (the stage worker's last attempt).
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PreprocessSpec } from '../../config/schema.js';
import { classifyBatch } from '../../pipeline/classify-batch.js';
import type { StageModel } from '../../pipeline/models/loaded-model.js';
import type { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { ChunkCalls, chunkSize, inferChunk, stackTensors, type ChunkImage, type ChunkPool } from '../../pipeline/inference/infer-chunks.js';
import { fromFloat16Bits } from '../../pipeline/onnx/float16.js';

const PER = 3; // values per image in the stand-in pool

/** A pool whose model answers [v, 1 - v] for an image whose tensor starts with v, and fails any call holding a negative v. */
function fakePool(calls: number[][] = []): ChunkPool {
  return {
    io: { inputName: 'x', outputName: 'y', inputDtype: 'float32', channels: PER, height: 1, width: 1, fixedBatch: null },
    infer: async (data, n) => {
      const firsts = Array.from({ length: n }, (_, i) => data[i * PER]!);
      calls.push(firsts);
      if (firsts.some((v) => v < 0)) throw new Error('model exploded');
      return { probs: Float32Array.from(firsts.flatMap((v) => [v, 1 - v])), classes: 2, ms: 1 };
    },
  };
}
const image = (pos: number, v: number): ChunkImage => ({ item: { pos }, tensor: new Float32Array(PER).fill(v) });

describe('stackTensors', () => {
  it('puts tensors back to back in the model dtype', () => {
    expect(stackTensors([Float32Array.of(1, 2), Float32Array.of(3, 4)], 2, 'float32')).toEqual(Float32Array.of(1, 2, 3, 4));
    const half = stackTensors([Uint16Array.of(0x3c00), Uint16Array.of(0x4000)], 1, 'float16');
    expect(half).toBeInstanceOf(Uint16Array);
    expect(Array.from(half, fromFloat16Bits)).toEqual([1, 2]);
  });
});

describe('chunkSize', () => {
  it('reads absent or 0 as one call for everything', () => {
    expect([chunkSize(undefined), chunkSize(0), chunkSize(4)]).toEqual([Infinity, Infinity, 4]);
  });
});

describe('inferChunk', () => {
  it('stacks in batch position order and gives each image its row', async () => {
    const calls: number[][] = [];
    const out = await inferChunk(fakePool(calls), [image(2, 0.25), image(0, 0.75)]);
    expect(calls).toEqual([[0.75, 0.25]]);
    expect(out.ok && out.images.map((r) => r.item.pos)).toEqual([0, 2]);
    expect(out.ok && out.probs.map((p) => Array.from(p))).toEqual([
      [0.75, 0.25],
      [0.25, 0.75],
    ]);
  });

  it('resolves a failed call as an outcome for its images', async () => {
    const out = await inferChunk(fakePool(), [image(1, -1), image(0, 0.5)]);
    expect(out.ok).toBe(false);
    expect(!out.ok && [out.images.map((r) => r.item.pos), (out.err as Error).message]).toEqual([[0, 1], 'model exploded']);
  });
});

describe('ChunkCalls', () => {
  it('starts a call as each chunk fills and confines a failure to its own chunk', async () => {
    const calls: number[][] = [];
    const chunks = new ChunkCalls(fakePool(calls), 2);
    chunks.add(image(0, 0.5));
    chunks.add(image(1, 0.5));
    expect(calls).toHaveLength(1);
    chunks.add(image(2, -1));
    chunks.add(image(3, 0.5));
    chunks.add(image(4, 0.5));
    const outcomes = await chunks.finish();
    expect(calls.map((c) => c.length)).toEqual([2, 2, 1]);
    expect(outcomes.map((o) => [o.ok, o.images.map((r) => r.item.pos)])).toEqual([
      [true, [0, 1]],
      [false, [2, 3]],
      [true, [4]],
    ]);
  });
});

describe('classifyBatch over a failing call', () => {
  const preprocess = PreprocessSpec.parse({ resize: 1, crop: 1, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' });
  const grey = (v: number) =>
    sharp({ create: { width: 1, height: 1, channels: 3, background: { r: v, g: v, b: v } } })
      .png()
      .toBuffer();

  it("turns only that call's images into inference rows when asked, and fails the batch otherwise", async () => {
    const bytes = new Map<string, Buffer>([
      ['sure.png', await grey(255)],
      ['unsure.png', await grey(128)],
    ]);
    // The stand-in reads an image's first value: 1 for white (accepted), 128/255 for grey (forwarded).
    const pool = fakePool();
    const failing: ChunkPool = {
      io: pool.io,
      infer: (data, n) => (n === 2 && data[0]! > 0.99 && data[PER]! > 0.99 ? Promise.reject(new Error('model exploded')) : pool.infer(data, n)),
    };
    const refs = ['unsure.png', 'unsure.png', 'sure.png', 'sure.png', 'unsure.png', 'missing.png'];
    const items = refs.map((ref, pos) => ({ ref, pos }));
    const model: StageModel = { name: 'little', pool: failing as unknown as InferencePool, preprocess, labels: null };
    const fetch = async (ref: string) => bytes.get(ref) ?? Promise.reject(new Error(`no ${ref}`));
    // One fetch at a time: chunks are positions [0, 1], [2, 3], [4].
    const deps = { fetch, maxPixels: 1e6, fetchConcurrency: 1, inferChunk: 2 };
    const decision = { threshold: 0.9, metric: 'maxprob' as const };

    const result = await classifyBatch(items, model, decision, { ...deps, inferenceErrorsAsRows: true });
    expect(result.rows.map((r) => [r.pos, r.error?.kind ?? null])).toEqual([
      [2, 'inference'],
      [3, 'inference'],
      [5, 'fetch'],
    ]);
    expect(result.forward.map((f) => f.pos)).toEqual([0, 1, 4]);
    expect(result.forwardedConfidence.map((c) => c.toFixed(4))).toEqual(Array(3).fill((128 / 255).toFixed(4)));
    expect(result.stats).toMatchObject({ images: 6, accepted: 0, forwarded: 3, errors: 3, inferMs: 2 });

    await expect(classifyBatch(items, model, decision, deps)).rejects.toThrow('model exploded');
  });
});
