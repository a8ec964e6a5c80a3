/** The model runner on generated models: I/O discovery, batching, EP fallback, output kinds. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { ModelSession, type SessionOptions } from '../../pipeline/inference/model-session.js';
import { softmax } from '../../pipeline/routing.js';
import { expectedBigProbs, expectedLittleLogits, writeTestModels, type TestModels } from '../helpers/test-models.js';

let models: TestModels;
const base: SessionOptions = { executionProviders: ['cpu'], intraOpThreads: 1, output: 'auto', maxBatch: 2, graphOptimization: 'all' };

/** n solid-colour 8×8 CHW images, channel values taken from `colours`. */
function stack(colours: Array<[number, number, number]>): Float32Array {
  const plane = 64;
  const out = new Float32Array(colours.length * 3 * plane);
  colours.forEach((c, i) => c.forEach((v, ch) => out.fill(v, (i * 3 + ch) * plane, (i * 3 + ch + 1) * plane)));
  return out;
}
const COLOURS: Array<[number, number, number]> = [
  [1, 0, 0],
  [0, 1, 0],
  [0.5, 0.5, 0.5],
  [0.2, 0.1, 0.9],
  [0, 0, 0],
];

beforeAll(async () => {
  models = await writeTestModels(await mkdtemp(join(tmpdir(), 'cascade-models-')));
});

describe('ModelSession', () => {
  it('reads a fixed batch-1 model and runs a batch of 5 image by image, applying softmax to logits', async () => {
    const s = await ModelSession.open(models.colourLittle, base);
    expect(s.io).toEqual({ inputName: 'pixels', outputName: 'logits', inputDtype: 'float32', channels: 3, height: 8, width: 8, fixedBatch: 1 });
    const { probs, classes } = await s.run(stack(COLOURS), COLOURS.length);
    expect(classes).toBe(4);
    COLOURS.forEach((c, i) => Array.from(softmax(expectedLittleLogits(...c))).forEach((p, k) => expect(probs[i * 4 + k]).toBeCloseTo(p, 5)));
    await s.close();
  });

  it('chunks a batched model by maxBatch and keeps probabilities as they are', async () => {
    const s = await ModelSession.open(models.colourBig, base);
    expect(s.io.fixedBatch).toBeNull();
    const { probs } = await s.run(stack(COLOURS), COLOURS.length);
    COLOURS.forEach((c, i) => expectedBigProbs(...c).forEach((p, k) => expect(probs[i * 4 + k]).toBeCloseTo(p, 5)));
    await s.close();
  });

  it('falls back along the provider list and says which one it uses', async () => {
    const s = await ModelSession.open(models.colourBig, { ...base, executionProviders: ['cuda', 'cpu'] });
    expect(s.provider).toBe('cpu');
    await s.close();
  });

  it('fails with every provider named when none loads', async () => {
    await expect(ModelSession.open(models.colourBig, { ...base, executionProviders: ['cuda', 'tensorrt'] })).rejects.toThrow(/cuda: .*tensorrt: /);
  });

  it('refuses a missing model file clearly', async () => {
    await expect(ModelSession.open('/nonexistent/model.onnx', base)).rejects.toThrow(/nonexistent\/model\.onnx/);
  });
});

describe('InferencePool', () => {
  it('infers in a worker thread while the event loop stays responsive', async () => {
    const pool = await InferencePool.open(models.colourLittleFp16, { ...base, threads: 1 });
    expect(pool.io.inputDtype).toBe('float16');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const n = 200;
    const { toFloat16Array } = await import('../../pipeline/onnx/float16.js');
    const colours = Array.from({ length: n }, (_, i) => COLOURS[i % COLOURS.length]!);
    const result = await pool.infer(toFloat16Array(stack(colours)), n);
    clearInterval(timer);
    expect(result.classes).toBe(4);
    expect(result.probs[0]).toBeCloseTo(softmax(expectedLittleLogits(1, 0, 0))[0]!, 3);
    expect(ticks).toBeGreaterThan(0);
    await pool.close();
  });
});
