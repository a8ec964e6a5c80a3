/** The model runner on generated models: I/O discovery, batching, EP fallback, output kinds. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
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

  // DirectML exists only on Windows and CoreML only on Apple systems: on every host one of them
  // cannot load, whatever GPU it has (CUDA may well load on a GPU host).
  const unloadable = process.platform === 'win32' ? 'coreml' : 'dml';

  it('falls back along the provider list and says which one it uses', async () => {
    const s = await ModelSession.open(models.colourBig, { ...base, executionProviders: [unloadable, 'cpu'] });
    expect(s.provider).toBe('cpu');
    await s.close();
  });

  it('puts CUDA first where it loads, and falls back to the CPU where it does not', async () => {
    const cudaAlone = await ModelSession.open(models.colourBig, { ...base, executionProviders: ['cuda'] }).then(
      async (s) => {
        await s.close();
        return true;
      },
      () => false,
    );
    const s = await ModelSession.open(models.colourBig, { ...base, executionProviders: ['cuda', 'cpu'] });
    expect(s.provider).toBe(cudaAlone ? 'cuda' : 'cpu');
    const { probs } = await s.run(stack(COLOURS), COLOURS.length);
    COLOURS.forEach((c, i) => expectedBigProbs(...c).forEach((p, k) => expect(probs[i * 4 + k]).toBeCloseTo(p, 3)));
    await s.close();
  });

  it('fails with every provider named when none loads', async () => {
    await expect(ModelSession.open(models.colourBig, { ...base, executionProviders: ['dml', 'coreml'] })).rejects.toThrow(/dml: .*coreml: /);
  });

  it('refuses a missing model file clearly', async () => {
    await expect(ModelSession.open('/nonexistent/model.onnx', base)).rejects.toThrow(/nonexistent\/model\.onnx/);
  });
});

describe('InferencePool', () => {
  it('infers float16 input in a worker thread', async () => {
    const pool = await InferencePool.open(models.colourLittleFp16, { ...base, threads: 1 });
    expect(pool.io.inputDtype).toBe('float16');
    const n = 20;
    const { toFloat16Array } = await import('../../pipeline/onnx/float16.js');
    const colours = Array.from({ length: n }, (_, i) => COLOURS[i % COLOURS.length]!);
    const result = await pool.infer(toFloat16Array(stack(colours)), n);
    expect(result.classes).toBe(4);
    colours.forEach((c, i) => Array.from(softmax(expectedLittleLogits(...c))).forEach((p, k) => expect(result.probs[i * 4 + k]).toBeCloseTo(p, 2)));
    await pool.close();
  });

  it('runs the session off the main thread: the pool thread opens and runs it, the main thread never does', async () => {
    // (A timer's cadence cannot show this: onnxruntime-node's session.run does not block the
    // event loop of the thread it is called on. What must not happen is the session living on
    // the main thread, where BullMQ renews its locks.)
    const opened = vi.spyOn(ModelSession, 'open');
    const pool = await InferencePool.open(models.colourBig, { ...base, threads: 1 });
    try {
      const result = await pool.infer(stack(COLOURS), COLOURS.length);
      COLOURS.forEach((c, i) => expectedBigProbs(...c).forEach((p, k) => expect(result.probs[i * 4 + k]).toBeCloseTo(p, 5)));
      expect(opened).not.toHaveBeenCalled();
    } finally {
      opened.mockRestore();
      await pool.close();
    }
  });
});
