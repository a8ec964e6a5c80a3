/**
 * The baseline Cascade is measured against in `npm run bench -- cost`: a plain loop in one
 * process, sharp then onnxruntime, one batch after another, no queue, no threads of our own.
 * Same torchvision-style preprocessing (shorter side 256, centre crop 224, ImageNet mean/std) and
 * the session Cascade opens (createSession: `numerics: exact`, no spinning, and the retry that
 * loads the ensemble's shared int8 weights), so the difference is the pipeline, not the kernels.
 * Usage: node --import tsx bench/plain-loop.ts <model.onnx> <list.txt> <batch size>
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { createSession } from '../pipeline/inference/model-session.js';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const SIZE = 224;

/** One photo as a normalised CHW float32 tensor. */
async function tensor(path: string, out: Float32Array, offset: number): Promise<void> {
  const image = sharp(await readFile(path), { ignoreIcc: true }).autoOrient();
  const { width = 1, height = 1 } = await image.metadata();
  const scale = 256 / Math.min(width, height);
  const w = Math.max(SIZE, Math.trunc(width * scale));
  const h = Math.max(SIZE, Math.trunc(height * scale));
  const { data } = await image
    .resize(w, h, { kernel: 'linear', fit: 'fill' })
    .extract({ left: Math.round((w - SIZE) / 2), top: Math.round((h - SIZE) / 2), width: SIZE, height: SIZE })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const plane = SIZE * SIZE;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[offset + c * plane + i] = (data[i * 3 + c]! / 255 - MEAN[c]!) / STD[c]!;
  }
}

const [model, list, batchArg] = process.argv.slice(2);
if (!model || !list) throw new Error('usage: plain-loop.ts <model.onnx> <list.txt> <batch size>');
const batch = Number(batchArg ?? 1);
const paths = (await readFile(list, 'utf8')).split('\n').filter((l) => l.trim() !== '');
const session = await createSession(model, ['cpu'], { graphOptimization: 'all', intraOpThreads: 0, numerics: 'exact' });
const fixed = session.inputMetadata[0];
// A model fixed at batch 1 takes one image a call.
const perCall = fixed && 'shape' in fixed && typeof fixed.shape[0] === 'number' ? fixed.shape[0] : batch;
let labelled = 0;
for (let i = 0; i < paths.length; i += perCall) {
  const chunk = paths.slice(i, i + perCall);
  const data = new Float32Array(chunk.length * 3 * SIZE * SIZE);
  for (const [j, p] of chunk.entries()) await tensor(p, data, j * 3 * SIZE * SIZE);
  const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', data, [chunk.length, 3, SIZE, SIZE]) });
  labelled += (out[session.outputNames[0]!]!.dims[0] as number) ?? 0;
}
process.stdout.write(`${JSON.stringify({ images: paths.length, labelled })}\n`);
