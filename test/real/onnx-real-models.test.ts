/**
 * The ONNX tooling on the real pretrained models of ../shared/assets (or $CASCADE_ASSETS): MAC
 * counts against the README's figures, and a protobuf decode → encode round trip that still runs
 * alike (the same code on generated models: unit/macs.test.ts, unit/onnx-proto.test.ts). Skipped,
 * with a message, where the assets are absent.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { countMacs } from '../../pipeline/onnx/macs.js';
import { decodeModel, encodeModel } from '../../pipeline/onnx/onnx-proto.js';

const assets = resolve(process.env.CASCADE_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets'));
const squeezenet = resolve(assets, 'models/derived/squeezenet1.1-fp32.from-winml-fp16.onnx');

const REAL_MODELS: [string, number][] = [
  ['models/squeezenet1.1-fp16.winml.onnx', 0.35e9],
  ['models/derived/squeezenet1.1-fp32.from-winml-fp16.onnx', 0.35e9],
  ['models/shufflenet-v2-12-qdq.onnx', 0.15e9],
  ['models/mobilenetv2-12-int8.onnx', 0.3e9],
  ['models/derived/ensemble-big.mbv2int8+shufflenetqdq+sqz11.fliptta.onnx', 1.6e9],
];
const haveAssets = REAL_MODELS.every(([file]) => existsSync(resolve(assets, file)));
if (!haveAssets) console.warn(`macs: real-model tests skipped: models not found under ${assets} (set CASCADE_ASSETS)`);

describe.skipIf(!haveAssets)('countMacs on the real models (within 10% of the README)', () => {
  for (const [file, expected] of REAL_MODELS) {
    it(file, () => {
      const result = countMacs(readFileSync(resolve(assets, file)));
      expect(result.unresolved).toEqual([]);
      expect(Math.abs(result.macs / expected - 1)).toBeLessThan(0.1);
    });
  }
});

if (!existsSync(squeezenet)) console.warn(`onnx-proto real-model test skipped: ${squeezenet} not found (set CASCADE_ASSETS)`);
describe.skipIf(!existsSync(squeezenet))('onnx-proto on a real model', () => {
  it('survives decode → encode and still runs with identical outputs', async () => {
    const original = readFileSync(squeezenet);
    const reencoded = encodeModel(decodeModel(original));
    const input = new Float32Array(3 * 224 * 224).map((_, i) => ((i * 37) % 255) - 120);
    const run = async (bytes: Uint8Array): Promise<Float32Array> => {
      const session = await ort.InferenceSession.create(bytes);
      const out = await session.run({ data_0: new ort.Tensor('float32', input, [1, 3, 224, 224]) });
      await session.release();
      return out.softmaxout_1!.data as Float32Array;
    };
    expect(Array.from(await run(reencoded))).toEqual(Array.from(await run(original)));
  });
});
