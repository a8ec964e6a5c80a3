/**
 * The numerics option on generated models: 'exact' sets session.x64quantprecision on the CPU
 * provider, and a model whose int8 weights are shared between readers loads (each reader gets its
 * own copy) and answers as 'native' does. Photo by photo on emulated CPUs: real/cpu-emulation.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelSession, sessionConfigEntries, unshareInt8Initializers } from '../../pipeline/inference/model-session.js';
import { decodeModel } from '../../pipeline/onnx/onnx-proto.js';
import { OnnxBuilder } from '../helpers/onnx-builder.js';

describe('numerics option', () => {
  it("maps 'exact' to session.x64quantprecision on the CPU provider only", () => {
    const spinning = { 'session.intra_op.allow_spinning': '0', 'session.inter_op.allow_spinning': '0' };
    expect(sessionConfigEntries('exact', ['cpu'])).toEqual({ ...spinning, 'session.x64quantprecision': '1' });
    expect(sessionConfigEntries('exact', ['cuda', 'cpu'])).toEqual({ ...spinning, 'session.x64quantprecision': '1' });
    expect(sessionConfigEntries('exact', ['cuda'])).toEqual(spinning);
    expect(sessionConfigEntries('native', ['cpu'])).toEqual(spinning);
  });

  // The ensemble shares its weights between the photo and its mirror: ORT's s8→u8 weight
  // conversion names each copy `<weight>_s8_2_u8` and fails on the second reader.
  const shared = sharedInt8WeightModel();

  it('gives each reader of a shared int8 initializer its own copy, and nothing else changes', () => {
    const out = unshareInt8Initializers(shared);
    expect(out).not.toBeNull();
    const graph = decodeModel(out!).graph!;
    const convs = graph.node!.filter((n) => n.op_type === 'QLinearConv');
    expect(convs).toHaveLength(2);
    expect(convs[0]!.input![3]).toBe('w');
    expect(convs[1]!.input![3]).not.toBe('w');
    expect(convs[0]!.input![5]).not.toBe(convs[1]!.input![5]);
    const byName = new Map(graph.initializer!.map((t) => [t.name, t]));
    expect(byName.get(convs[1]!.input![3]!)!.raw_data).toEqual(byName.get('w')!.raw_data);
    // Shared uint8/float initializers (scales, activation zero points) stay shared.
    expect(convs[1]!.input![1]).toBe(convs[0]!.input![1]);
    expect(unshareInt8Initializers(sharedInt8WeightModel(false))).toBeNull();
  });

  it("opens a model with shared int8 weights in 'exact' mode and answers as 'native' does", async () => {
    const dirPath = await mkdtemp(join(tmpdir(), 'cascade-numerics-'));
    try {
      const path = join(dirPath, 'shared.onnx');
      await writeFile(path, shared);
      const x = Float32Array.from({ length: 3 * 4 * 4 }, (_, i) => ((i * 37) % 11) / 10);
      const rows: Float32Array[] = [];
      for (const numerics of ['exact', 'native'] as const) {
        const s = await ModelSession.open(path, {
          executionProviders: ['cpu'],
          intraOpThreads: 1,
          output: 'logits',
          maxBatch: 1,
          graphOptimization: 'all',
          numerics,
        });
        rows.push((await s.run(x, 1)).probs);
        await s.close();
      }
      // No two neighbouring weights of a row (the pairs u8s8 kernels add in int16) reach 255×|w|
      // above 32,767, so ORT's kernels cannot saturate here and both modes agree on every CPU.
      Array.from(rows[0]!).forEach((p, i) => expect(p).toBeCloseTo(rows[1]![i]!, 5));
    } finally {
      await rm(dirPath, { recursive: true, force: true });
    }
  });
});

/**
 * [1,3,4,4] → QuantizeLinear → QLinearConv → QLinearConv → DequantizeLinear → mean → [1,3] logits,
 * both convolutions reading one int8 weight (values beyond ±64, which ORT converts) and zero point.
 */
function sharedInt8WeightModel(share = true): Uint8Array {
  const weights = [100, -120, 7, -3, 90, 60, -100, 5, 1];
  const b = new OnnxBuilder()
    .input('x', 'float32', [1, 3, 4, 4])
    .initializer('s', 'float32', [], [1 / 64])
    .initializer('zp', 'uint8', [], [128])
    .initializer('w', 'int8', [3, 3, 1, 1], weights)
    .initializer('ws', 'float32', [], [1 / 128])
    .initializer('wzp', 'int8', [], [0]);
  if (!share) b.initializer('w2', 'int8', [3, 3, 1, 1], weights).initializer('wzp2', 'int8', [], [0]);
  return b
    .node('QuantizeLinear', ['x', 's', 'zp'], ['xq'])
    .node('QLinearConv', ['xq', 's', 'zp', 'w', 'ws', 'wzp', 's', 'zp'], ['y1q'])
    .node('QLinearConv', ['y1q', 's', 'zp', share ? 'w' : 'w2', 'ws', share ? 'wzp' : 'wzp2', 's', 'zp'], ['y2q'])
    .node('DequantizeLinear', ['y2q', 's', 'zp'], ['y'])
    .node('ReduceMean', ['y'], ['m'], { axes: [2, 3], keepdims: 0 })
    .output('m', 'float32', [1, 3])
    .build();
}
