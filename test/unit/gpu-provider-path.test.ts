/**
 * What a big worker on a GPU provider relies on, checked on the CPU: batch accumulation is on for
 * every provider but the CPU, a float16 model with a dynamic batch runs through the accumulator
 * (Uint16Array inputs stacked, float16 outputs read), and the node placement is read from
 * onnxruntime's profiler.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { accumulationWaitMs, DEFAULT_ACCUMULATE_MS, InferencePool } from '../../pipeline/inference/inference-pool.js';
import { formatPlacement, nodePlacement, placementFromProfile } from '../../pipeline/inference/node-placement.js';
import { toFloat16Array } from '../../pipeline/onnx/float16.js';
import { softmax } from '../../pipeline/routing.js';
import { OnnxBuilder } from '../helpers/onnx-builder.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;
/** float16 [N,3,4,4] `input` → channel means → float16 [N,3] `logits`: the float16 I/O of an exported half model. */
let halfMeans: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-gpu-path-'));
  models = await writeTestModels(dir);
  halfMeans = join(dir, 'half-means.onnx');
  const model = new OnnxBuilder()
    .input('input', 'float16', ['n', 3, 4, 4])
    .node('Cast', ['input'], ['x32'], { to: 1 })
    .node('ReduceMean', ['x32'], ['means'], { axes: [2, 3], keepdims: 0 })
    .node('Cast', ['means'], ['logits'], { to: 10 }) // 10 = FLOAT16
    .output('logits', 'float16', ['n', 3]);
  await writeFile(halfMeans, model.build());
});

describe('batch accumulation by provider', () => {
  it('is on for every provider a session opened on except the CPU, for models with a dynamic batch only', () => {
    expect(accumulationWaitMs(undefined, 'cpu', null)).toBe(0);
    for (const provider of ['webgpu', 'cuda', 'tensorrt', 'dml', 'coreml'] as const)
      expect(accumulationWaitMs(undefined, provider, null)).toBe(DEFAULT_ACCUMULATE_MS);
    // A fixed-batch model never accumulates, whatever the provider or the setting.
    expect(accumulationWaitMs(undefined, 'webgpu', 1)).toBe(0);
    expect(accumulationWaitMs(50, 'webgpu', 1)).toBe(0);
    // The configured value wins both ways.
    expect(accumulationWaitMs(0, 'webgpu', null)).toBe(0);
    expect(accumulationWaitMs(7, 'cpu', null)).toBe(7);
  });

  it('stacks concurrent float16 requests into one call and hands each its own float32 rows', async () => {
    // accumulateMs set, as a GPU provider would have it by default: the same path on the CPU.
    const pool = await InferencePool.open(halfMeans, {
      executionProviders: ['cpu'],
      intraOpThreads: 1,
      threads: 1,
      output: 'logits',
      maxBatch: 8,
      graphOptimization: 'all',
      accumulateMs: 50,
    });
    expect(pool.io).toMatchObject({ inputDtype: 'float16', fixedBatch: null, channels: 3, height: 4, width: 4 });
    const image = (r: number, g: number, b: number) => [r, g, b].flatMap((v) => Array<number>(16).fill(v));
    const requests = [[image(0.5, 0.25, 0)], [image(0, 1, 0), image(0.125, 0.125, 2)], [image(-1, 0, 1)]];
    const results = await Promise.all(requests.map((imgs) => pool.infer(toFloat16Array(imgs.flat()), imgs.length)));
    expect(pool.accumulator?.calls).toEqual([4]);
    results.forEach((res, i) => {
      expect(res.classes).toBe(3);
      expect(res.probs).toBeInstanceOf(Float32Array);
      requests[i]!.forEach((img, k) => {
        const expected = softmax([img[0]!, img[16]!, img[32]!]);
        for (let c = 0; c < 3; c++) expect(res.probs[k * 3 + c]).toBeCloseTo(expected[c]!, 3);
      });
    });
    await pool.close();
  });
});

describe('node placement', () => {
  it('reads providers, operators, segments and copies from profile events in execution order', () => {
    const node = (name: string, op: string, provider: string, ts: number) => ({
      cat: 'Node',
      name: `${name}_kernel_time`,
      ts,
      args: { op_name: op, provider },
    });
    const events = [
      { cat: 'Session', name: 'model_run', ts: 0 },
      node('conv1', 'Conv', 'WebGpuExecutionProvider', 10),
      { cat: 'Node', name: 'conv1_fence_before', ts: 9, args: { op_name: 'Conv', provider: 'WebGpuExecutionProvider' } },
      node('copy_out', 'MemcpyToHost', 'WebGpuExecutionProvider', 20),
      node('qconv', 'QLinearConv', 'CPUExecutionProvider', 30),
      node('copy_in', 'MemcpyFromHost', 'WebGpuExecutionProvider', 40),
      node('relu', 'Relu', 'WebGpuExecutionProvider', 50),
      node('conv0', 'Conv', 'WebGpuExecutionProvider', 5),
    ];
    const p = placementFromProfile(events, ['webgpu', 'cpu']);
    expect(p.requested).toEqual(['webgpu', 'cpu']);
    expect(p.providers).toEqual([
      { provider: 'webgpu', nodes: 5, ops: { Conv: 2, MemcpyToHost: 1, MemcpyFromHost: 1, Relu: 1 } },
      { provider: 'cpu', nodes: 1, ops: { QLinearConv: 1 } },
    ]);
    expect(p.segments).toBe(3);
    expect(p.copies).toBe(2);
    expect(formatPlacement(p, 2)).toBe('webgpu 5 nodes (Conv 2, MemcpyToHost 1, …); cpu 1 node (QLinearConv 1); 3 segments, 2 copies');
  });

  it('profiles one call of a real session: every node of a float32 and a float16 model on the CPU', async () => {
    const p = await nodePlacement(models.convNet, { executionProviders: ['cpu'], intraOpThreads: 1 });
    expect(p.providers.map((s) => s.provider)).toEqual(['cpu']);
    expect(p.providers[0]!.nodes).toBeGreaterThanOrEqual(3);
    expect(p.providers[0]!.ops).toHaveProperty('Gemm');
    expect(p).toMatchObject({ segments: 1, copies: 0 });
    const half = await nodePlacement(halfMeans, { executionProviders: ['cpu'], intraOpThreads: 1 });
    expect(half.providers).toEqual([{ provider: 'cpu', nodes: 3, ops: { Cast: 2, ReduceMean: 1 } }]);
  });

  it('fails clearly for a model it cannot open', async () => {
    await expect(nodePlacement(join(dir, 'missing.onnx'), { executionProviders: ['cpu'] })).rejects.toThrow(/missing\.onnx/);
  });
});
