import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countMacs } from '../../pipeline/onnx/macs.js';
import { fromFloat16Bits, toFloat16Bits } from '../../pipeline/onnx/float16.js';
import {
  CONV_NET_MACS,
  CONV_NET_WEIGHTS,
  CONV_POOL_NET_MACS,
  expectedBigProbs,
  expectedLittleLogits,
  LABELS,
  writeTestModels,
  type TestModels,
} from '../helpers/test-models.js';

const PIXELS = 3 * 8 * 8;

/** One CHW image per colour, every pixel of channel c equal to rgb[c]. */
function solid(rgb: [number, number, number]): Float32Array {
  const img = new Float32Array(PIXELS);
  rgb.forEach((v, c) => img.fill(v, c * 64, (c + 1) * 64));
  return img;
}

/** A non-uniform image, so the tests exercise the averaging too. */
function noisy(seed: number): Float32Array {
  return new Float32Array(PIXELS).map((_, i) => ((i * 29 + seed * 11) % 97) / 96);
}

function channelMeans(img: ArrayLike<number>): [number, number, number] {
  const mean = (c: number): number => {
    let s = 0;
    for (let i = 0; i < 64; i++) s += img[c * 64 + i]!;
    return s / 64;
  };
  return [mean(0), mean(1), mean(2)];
}

function softmax(xs: number[]): number[] {
  const e = xs.map((x) => Math.exp(x - Math.max(...xs)));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

async function run(path: string, feeds: Record<string, ort.Tensor>): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(path);
  const out = await session.run(feeds);
  const result = out[session.outputNames[0]!]!;
  await session.release();
  return result;
}

function expectClose(actual: ArrayLike<number>, expected: number[], tolerance: number): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((e, i) => expect(Math.abs(actual[i]! - e)).toBeLessThan(tolerance));
}

/** Reference for conv-net.onnx: Conv 3x3 pad 1 → Relu → mean → Gemm. */
function convNetReference(img: Float32Array): number[] {
  const { conv, convBias, fc, fcBias } = CONV_NET_WEIGHTS;
  const pooled = Array.from({ length: 8 }, (_, o) => {
    let total = 0;
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        let acc = convBias[o]!;
        for (let c = 0; c < 3; c++) {
          for (let ky = 0; ky < 3; ky++) {
            for (let kx = 0; kx < 3; kx++) {
              const iy = y + ky - 1;
              const ix = x + kx - 1;
              if (iy < 0 || iy >= 8 || ix < 0 || ix >= 8) continue;
              acc += conv[((o * 3 + c) * 3 + ky) * 3 + kx]! * img[c * 64 + iy * 8 + ix]!;
            }
          }
        }
        total += Math.max(acc, 0);
      }
    }
    return total / 64;
  });
  return Array.from({ length: 4 }, (_, j) => pooled.reduce((s, p, i) => s + p * fc[i * 4 + j]!, fcBias[j]!));
}

describe('generated test models', () => {
  let dir: string;
  let models: TestModels;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-test-models-'));
    models = await writeTestModels(dir);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes labels.txt with the four classes', async () => {
    expect((await readFile(models.labels, 'utf8')).trim().split('\n')).toEqual([...LABELS]);
  });

  it('colour-little: logits = [8r, 8g, 8b, 2]', async () => {
    const red = await run(models.colourLittle, { pixels: new ort.Tensor('float32', solid([1, 0, 0]), [1, 3, 8, 8]) });
    expect(red.dims).toEqual([1, 4]);
    expectClose(red.data as Float32Array, [8, 0, 0, 2], 1e-6);
    expect(Math.max(...softmax([...(red.data as Float32Array)]))).toBeCloseTo(0.99686, 5);

    const grey = await run(models.colourLittle, { pixels: new ort.Tensor('float32', solid([0.5, 0.5, 0.5]), [1, 3, 8, 8]) });
    expect(Math.max(...softmax([...(grey.data as Float32Array)]))).toBeCloseTo(0.319, 3);

    const img = noisy(1);
    const out = await run(models.colourLittle, { pixels: new ort.Tensor('float32', img, [1, 3, 8, 8]) });
    expectClose(out.data as Float32Array, expectedLittleLogits(...channelMeans(img)), 1e-5);
  });

  it('colour-little-fp16: same logits from a float16 input', async () => {
    const img = noisy(2);
    const bits = Uint16Array.from(img, toFloat16Bits);
    const out = await run(models.colourLittleFp16, { pixels: new ort.Tensor('float16', bits, [1, 3, 8, 8]) });
    expect(out.type).toBe('float32');
    // Exact up to float32 summation once the input is rounded to float16; close to float32 model.
    expectClose(out.data as Float32Array, expectedLittleLogits(...channelMeans(Array.from(bits, fromFloat16Bits))), 1e-5);
    expectClose(out.data as Float32Array, expectedLittleLogits(...channelMeans(img)), 1e-2);
  });

  it('colour-big: probs = softmax([8r, 8g, 8b, 4 + 2(r+g+b)]) for a dynamic batch', async () => {
    const images = [solid([1, 0, 0]), solid([0.5, 0.5, 0.5]), noisy(3)];
    const batch = new Float32Array(images.length * PIXELS);
    images.forEach((img, i) => batch.set(img, i * PIXELS));
    const out = await run(models.colourBig, { input: new ort.Tensor('float32', batch, [images.length, 3, 8, 8]) });
    expect(out.dims).toEqual([3, 4]);
    const probs = out.data as Float32Array;
    images.forEach((img, i) => expectClose(probs.subarray(i * 4, i * 4 + 4), expectedBigProbs(...channelMeans(img)), 1e-6));
    expect(probs[0]).toBeCloseTo(0.88, 3); // solid red → red
    expect(probs[4 + 3]).toBeCloseTo(0.87, 3); // grey → other
  });

  it(`conv-net: matches a reference convolution and has ${CONV_NET_MACS} MACs`, async () => {
    const img = noisy(4);
    const out = await run(models.convNet, { pixels: new ort.Tensor('float32', img, [1, 3, 8, 8]) });
    expectClose(out.data as Float32Array, convNetReference(img), 1e-5);
    expect(countMacs(await readFile(models.convNet))).toEqual({
      macs: CONV_NET_MACS,
      byOp: { Conv: 13824, Gemm: 32 },
      unresolved: [],
    });
  });

  it(`conv-pool-net: runs with batch 2 and has ${CONV_POOL_NET_MACS} MACs per image`, async () => {
    const batch = new Float32Array(2 * PIXELS);
    batch.set(noisy(5));
    batch.set(noisy(6), PIXELS);
    const out = await run(models.convPoolNet, { pixels: new ort.Tensor('float32', batch, [2, 3, 8, 8]) });
    expect(out.dims).toEqual([2, 4]);
    expect([...(out.data as Float32Array)].every(Number.isFinite)).toBe(true);
    expect(countMacs(await readFile(models.convPoolNet))).toMatchObject({ macs: CONV_POOL_NET_MACS, unresolved: [] });
  });
});
