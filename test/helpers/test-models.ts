/**
 * Tiny generated ONNX models for tests, with their outputs given as exact formulas so that
 * tests can predict every routing decision of a cascade built from them.
 *
 * The colour models look only at the channel means (r, g, b) of the image, in [0, 1] for
 * pixel values scaled to [0, 1]; classes are labels.txt: red, green, blue, other.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OnnxBuilder } from './onnx-builder.js';

export interface TestModels {
  dir: string;
  /** float32 [1,3,8,8] `pixels` → `logits` [1,4] = expectedLittleLogits. */
  colourLittle: string;
  /** Same as colourLittle but `pixels` is float16 (cast to float32 inside). */
  colourLittleFp16: string;
  /** float32 [N,3,8,8] `input` → `probs` [N,4] = expectedBigProbs. */
  colourBig: string;
  /** float32 [1,3,8,8] `pixels` → Conv 3x3 pad 1 → Relu → GAP → Gemm → `logits` [1,4]. */
  convNet: string;
  /** float32 [N,3,8,8] `pixels` → Conv stride 2 → MaxPool → depthwise Conv → Gemm → `logits` [N,4]. */
  convPoolNet: string;
  /** red, green, blue, other. */
  labels: string;
}

export const LABELS = ['red', 'green', 'blue', 'other'] as const;

/** Little model: logits = [8r, 8g, 8b, 2]. */
export function expectedLittleLogits(r: number, g: number, b: number): number[] {
  return [8 * r, 8 * g, 8 * b, 2];
}

/** Big model logits before its Softmax: [8r, 8g, 8b, 4 + 2(r+g+b)], so greys, black and white are "other". */
export function expectedBigLogits(r: number, g: number, b: number): number[] {
  return [8 * r, 8 * g, 8 * b, 4 + 2 * (r + g + b)];
}

/** Big model output: softmax of expectedBigLogits. */
export function expectedBigProbs(r: number, g: number, b: number): number[] {
  return softmax(expectedBigLogits(r, g, b));
}

function softmax(xs: number[]): number[] {
  const max = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** MACs of the colour models (little, fp16 little, big) per image: their one Gemm, [1,3] × [3,4]. */
export const COLOUR_MODEL_MACS = 3 * 4;

/** MACs of conv-net.onnx: Conv 8*8*8 outputs * 3*3*3, Gemm 8*4. */
export const CONV_NET_MACS = 8 * 8 * 8 * 3 * 3 * 3 + 8 * 4; // 13856

/** MACs of conv-pool-net.onnx per image: Conv 8*4*4 * 3*3*3, depthwise 8*1*1 * 1*2*2, Gemm 8*4. */
export const CONV_POOL_NET_MACS = 8 * 4 * 4 * 3 * 3 * 3 + 8 * 1 * 1 * 2 * 2 + 8 * 4; // 3520

/** Deterministic small weights in [-0.375, 0.375] so conv outputs stay well-scaled. */
export function patternWeights(count: number, seed: number): number[] {
  return Array.from({ length: count }, (_, i) => (((i * 5 + seed * 3) % 7) - 3) / 8);
}

/** The weights conv-net.onnx is built with, exposed so tests can recompute its output. */
export const CONV_NET_WEIGHTS = {
  conv: patternWeights(8 * 3 * 3 * 3, 1), // [8,3,3,3]
  convBias: patternWeights(8, 2), // [8]
  fc: patternWeights(8 * 4, 3), // [8,4] (Gemm B, not transposed)
  fcBias: patternWeights(4, 4), // [4]
};

/** Linear head on channel means: Gemm with B = [3,4] weights and C = [4] bias. */
function colourHead(b: OnnxBuilder, input: string, output: string, weights: number[], bias: number[]): OnnxBuilder {
  return b
    .initializer('head_w', 'float32', [3, 4], weights)
    .initializer('head_b', 'float32', [4], bias)
    .node('GlobalAveragePool', [input], ['means4d'])
    .node('Flatten', ['means4d'], ['means'], { axis: 1 })
    .node('Gemm', ['means', 'head_w', 'head_b'], [output]);
}

// Row c of the head weights scales channel c into logit c; see expectedLittleLogits.
const LITTLE_W = [8, 0, 0, 0, 0, 8, 0, 0, 0, 0, 8, 0];
const LITTLE_B = [0, 0, 0, 2];
// See expectedBigLogits: the "other" logit adds 2 per unit of each channel mean.
const BIG_W = [8, 0, 0, 2, 0, 8, 0, 2, 0, 0, 8, 2];
const BIG_B = [0, 0, 0, 4];

function colourLittle(): Uint8Array {
  const b = new OnnxBuilder({ name: 'colour-little' }).input('pixels', 'float32', [1, 3, 8, 8]);
  return colourHead(b, 'pixels', 'logits', LITTLE_W, LITTLE_B).output('logits', 'float32', [1, 4]).build();
}

function colourLittleFp16(): Uint8Array {
  const b = new OnnxBuilder({ name: 'colour-little-fp16' }).input('pixels', 'float16', [1, 3, 8, 8]).node('Cast', ['pixels'], ['pixels32'], { to: 1 }); // 1 = FLOAT
  return colourHead(b, 'pixels32', 'logits', LITTLE_W, LITTLE_B).output('logits', 'float32', [1, 4]).build();
}

function colourBig(): Uint8Array {
  const b = new OnnxBuilder({ name: 'colour-big' }).input('input', 'float32', ['N', 3, 8, 8]);
  return colourHead(b, 'input', 'logits', BIG_W, BIG_B).node('Softmax', ['logits'], ['probs'], { axis: 1 }).output('probs', 'float32', ['N', 4]).build();
}

function convNet(): Uint8Array {
  const w = CONV_NET_WEIGHTS;
  return new OnnxBuilder({ name: 'conv-net' })
    .input('pixels', 'float32', [1, 3, 8, 8])
    .initializer('conv_w', 'float32', [8, 3, 3, 3], w.conv)
    .initializer('conv_b', 'float32', [8], w.convBias)
    .initializer('fc_w', 'float32', [8, 4], w.fc)
    .initializer('fc_b', 'float32', [4], w.fcBias)
    .node('Conv', ['pixels', 'conv_w', 'conv_b'], ['conv'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] })
    .node('Relu', ['conv'], ['relu'])
    .node('GlobalAveragePool', ['relu'], ['pooled'])
    .node('Flatten', ['pooled'], ['flat'], { axis: 1 })
    .node('Gemm', ['flat', 'fc_w', 'fc_b'], ['logits'])
    .output('logits', 'float32', [1, 4])
    .build();
}

function convPoolNet(): Uint8Array {
  return (
    new OnnxBuilder({ name: 'conv-pool-net' })
      .input('pixels', 'float32', ['N', 3, 8, 8])
      .initializer('conv_w', 'float32', [8, 3, 3, 3], patternWeights(8 * 3 * 3 * 3, 5))
      .initializer('dw_w', 'float32', [8, 1, 2, 2], patternWeights(8 * 2 * 2, 6))
      .initializer('fc_w', 'float32', [4, 8], patternWeights(4 * 8, 7))
      // [N,3,8,8] → [N,8,4,4] → [N,8,2,2] → [N,8,1,1] → [N,8] → [N,4]
      .node('Conv', ['pixels', 'conv_w'], ['conv'], { strides: [2, 2], pads: [1, 1, 1, 1] })
      .node('MaxPool', ['conv'], ['pool'], { kernel_shape: [2, 2], strides: [2, 2] })
      .node('Conv', ['pool', 'dw_w'], ['dw'], { group: 8 })
      .node('Flatten', ['dw'], ['flat'])
      .node('Gemm', ['flat', 'fc_w'], ['logits'], { transB: 1 })
      .output('logits', 'float32', ['N', 4])
      .build()
  );
}

/** Writes every test model and labels.txt into `dir` (created if missing). */
export async function writeTestModels(dir: string): Promise<TestModels> {
  await mkdir(dir, { recursive: true });
  const files = {
    colourLittle: ['colour-little.onnx', colourLittle()],
    colourLittleFp16: ['colour-little-fp16.onnx', colourLittleFp16()],
    colourBig: ['colour-big.onnx', colourBig()],
    convNet: ['conv-net.onnx', convNet()],
    convPoolNet: ['conv-pool-net.onnx', convPoolNet()],
  } as const;
  const paths = {} as Record<keyof typeof files, string>;
  for (const [key, [name, bytes]] of Object.entries(files) as [keyof typeof files, readonly [string, Uint8Array]][]) {
    paths[key] = join(dir, name);
    await writeFile(paths[key], bytes);
  }
  const labels = join(dir, 'labels.txt');
  await writeFile(labels, `${LABELS.join('\n')}\n`);
  return { dir, ...paths, labels };
}
