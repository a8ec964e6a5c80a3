/**
 * Colour test models made deliberately slow, so fault tests can kill a worker while a batch is
 * in flight. Each model is the colour little/big model of test-models.ts plus a dead branch
 * that costs `matmuls` products of K×K matrices and adds exactly 0 to the logits (its weights
 * are zeros, but it depends on the input, so onnxruntime cannot fold it away).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OnnxBuilder } from './onnx-builder.js';

export interface SlowModels {
  little: string;
  big: string;
  labels: string;
}

// Same heads as test-models.ts: little logits [8r, 8g, 8b, 2], big softmax([8r, 8g, 8b, 4 + 2(r+g+b)]).
const LITTLE = { w: [8, 0, 0, 0, 0, 8, 0, 0, 0, 0, 8, 0], b: [0, 0, 0, 2] };
const BIG = { w: [8, 0, 0, 2, 0, 8, 0, 2, 0, 0, 8, 2], b: [0, 0, 0, 4] };

function slowModel(name: string, batch: number | 'N', head: { w: number[]; b: number[] }, softmax: boolean, k: number, matmuls: number): Uint8Array {
  const b = new OnnxBuilder({ name })
    .input('pixels', 'float32', [batch, 3, 8, 8])
    .initializer('head_w', 'float32', [3, 4], head.w)
    .initializer('head_b', 'float32', [4], head.b)
    .initializer('spread', 'float32', [192, k], new Float32Array(192 * k))
    .node('GlobalAveragePool', ['pixels'], ['means4d'])
    .node('Flatten', ['means4d'], ['means'], { axis: 1 })
    .node('Gemm', ['means', 'head_w', 'head_b'], ['head'])
    // [N,192] x [192,K] → [N,K]; its transpose times itself → [K,K] of zeros that depend on the input.
    .node('Flatten', ['pixels'], ['flat'], { axis: 1 })
    .node('MatMul', ['flat', 'spread'], ['row'])
    .node('Transpose', ['row'], ['col'], { perm: [1, 0] })
    .node('MatMul', ['col', 'row'], ['m0']);
  for (let i = 0; i < matmuls; i++) b.node('MatMul', [`m${i}`, 'm0'], [`m${i + 1}`]);
  b.node('ReduceSum', [`m${matmuls}`], ['zero'], { keepdims: 1 }).node('Add', ['head', 'zero'], ['logits']);
  if (softmax) b.node('Softmax', ['logits'], ['probs'], { axis: 1 }).output('probs', 'float32', [batch, 4]);
  else b.output('logits', 'float32', [batch, 4]);
  return b.build();
}

/**
 * Multiply-accumulates of the dead branch in one call of `batch` images: [batch,192]×[192,K],
 * [K,batch]×[batch,K], then `matmuls` products of K×K matrices. The K³ products are per call,
 * not per image, so a call of one image costs at least matmuls·K³.
 */
export function slowBranchMacs(k: number, matmuls: number, batch: number): number {
  return batch * 192 * k + k * batch * k + matmuls * k ** 3;
}

/** Writes slow-little.onnx (batch 1), slow-big.onnx (batch N) and labels.txt into `dir`. */
export async function writeSlowModels(dir: string, opts: { k?: number; matmuls?: number } = {}): Promise<SlowModels> {
  const k = opts.k ?? 512;
  const matmuls = opts.matmuls ?? 4;
  await mkdir(dir, { recursive: true });
  const little = join(dir, 'slow-little.onnx');
  const big = join(dir, 'slow-big.onnx');
  const labels = join(dir, 'labels.txt');
  await writeFile(little, slowModel('slow-little', 1, LITTLE, false, k, matmuls));
  await writeFile(big, slowModel('slow-big', 'N', BIG, true, k, matmuls));
  await writeFile(labels, 'red\ngreen\nblue\nother\n');
  return { little, big, labels };
}
