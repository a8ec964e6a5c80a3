/**
 * The ceiling: the same cascade with no Redis, no S3 and no worker threads — read from disk,
 * decode + preprocess (the next batch while the current one infers), little model, big model
 * on the routed images (reusing the little model's tensor when both preprocess alike).
 * Also measures each step's cost alone, from which the ideal cascade speed-up follows.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import type { ConfidenceMetric, ModelSpec } from '../config/schema.js';
import { ModelSession } from '../pipeline/inference/model-session.js';
import { preprocessImage } from '../pipeline/image/preprocess.js';
import type { Tensor } from '../pipeline/onnx/float16.js';
import { accepts, predict } from '../pipeline/routing.js';

export interface CascadeModels {
  little: ModelSpec;
  big: ModelSpec;
  threshold: number;
  metric: ConfidenceMetric;
}

export interface CeilingResult {
  images: number;
  seconds: number;
  imagesPerSecond: number;
  routed: number;
  /** CPU time of this process (all its threads) per image, ms. */
  cpuMsPerImage: number;
}

/** Per-image cost of each step run alone, serially, ms. */
export interface StageCosts {
  decodeMs: number;
  littleMs: number;
  bigMs: number;
}

function openSession(spec: ModelSpec, intraOpThreads: number): Promise<ModelSession> {
  return ModelSession.open(spec.path, {
    executionProviders: ['cpu'],
    intraOpThreads,
    output: spec.output,
    maxBatch: spec.maxBatch,
    graphOptimization: spec.graphOptimization,
  });
}

function decode(bytes: Buffer, spec: ModelSpec, s: ModelSession): Promise<Tensor> {
  return preprocessImage(bytes, spec.preprocess, { height: s.io.height, width: s.io.width, dtype: s.io.inputDtype }, { maxPixels: 100_000_000 });
}

function stack(tensors: Tensor[]): Tensor {
  const per = tensors[0]!.length;
  const out = tensors[0] instanceof Uint16Array ? new Uint16Array(per * tensors.length) : new Float32Array(per * tensors.length);
  tensors.forEach((t, i) => out.set(t, i * per));
  return out;
}

function samePreprocessing(a: ModelSession, b: ModelSession, sa: ModelSpec, sb: ModelSpec): boolean {
  return (
    JSON.stringify([a.io.height, a.io.width, a.io.inputDtype, sa.preprocess]) === JSON.stringify([b.io.height, b.io.width, b.io.inputDtype, sb.preprocess])
  );
}

/** Run the in-process cascade over `photos` and time it. */
export async function runCeiling(photos: string[], m: CascadeModels, batchSize = 32, intraOpThreads = 0): Promise<CeilingResult> {
  const [little, big] = await Promise.all([openSession(m.little, intraOpThreads), openSession(m.big, intraOpThreads)]);
  const reuse = samePreprocessing(little, big, m.little, m.big);
  const limit = pLimit(availableParallelism());
  const decodeBatch = (refs: string[]) =>
    Promise.all(
      refs.map((ref) =>
        limit(async () => {
          const bytes = await readFile(ref);
          return { bytes, tensor: await decode(bytes, m.little, little) };
        }),
      ),
    );
  try {
    const started = performance.now();
    const cpu = process.cpuUsage();
    let routed = 0;
    const batches: string[][] = [];
    for (let i = 0; i < photos.length; i += batchSize) batches.push(photos.slice(i, i + batchSize));
    let next = batches.length > 0 ? decodeBatch(batches[0]!) : null;
    for (let b = 0; b < batches.length; b++) {
      const ready = await next!;
      // Decoding runs on libuv threads while the session blocks this one.
      next = b + 1 < batches.length ? decodeBatch(batches[b + 1]!) : null;
      const { probs, classes } = await little.run(stack(ready.map((r) => r.tensor)), ready.length);
      const unsure = ready.filter((_, i) => !accepts(predict(probs.subarray(i * classes, (i + 1) * classes), m.metric).confidence, m.threshold));
      routed += unsure.length;
      if (unsure.length === 0) continue;
      const tensors = reuse ? unsure.map((u) => u.tensor) : await Promise.all(unsure.map((u) => decode(u.bytes, m.big, big)));
      await big.run(stack(tensors), tensors.length);
    }
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    return {
      images: photos.length,
      seconds,
      imagesPerSecond: photos.length / seconds,
      routed: routed / photos.length,
      cpuMsPerImage: (used.user + used.system) / 1000 / photos.length,
    };
  } finally {
    await Promise.all([little.close(), big.close()]);
  }
}

/** Time decode, little and big alone, one image at a time, over `photos`. */
export async function measureStageCosts(photos: string[], m: CascadeModels, intraOpThreads = 0): Promise<StageCosts> {
  const [little, big] = await Promise.all([openSession(m.little, intraOpThreads), openSession(m.big, intraOpThreads)]);
  try {
    const tensors: Tensor[] = [];
    let t = performance.now();
    for (const ref of photos) tensors.push(await decode(await readFile(ref), m.little, little));
    const decodeMs = (performance.now() - t) / photos.length;
    await little.run(tensors[0]!, 1);
    t = performance.now();
    for (const x of tensors) await little.run(x, 1);
    const littleMs = (performance.now() - t) / photos.length;
    await big.run(tensors[0]!, 1);
    t = performance.now();
    for (const x of tensors) await big.run(x, 1);
    const bigMs = (performance.now() - t) / photos.length;
    return { decodeMs, littleMs, bigMs };
  } finally {
    await Promise.all([little.close(), big.close()]);
  }
}

/** Ideal cascade speed-up over big-only from per-image costs: (d + B) / (d + L + f·B). */
export function idealSpeedup(c: StageCosts, routedFraction: number): number {
  return (c.decodeMs + c.bigMs) / (c.decodeMs + c.littleMs + routedFraction * c.bigMs);
}

/**
 * The same against the big-only pipeline as benchmarked, which still runs the little model on
 * every image (threshold 1 routes all): (d + L + B) / (d + L + f·B).
 */
export function idealSpeedupVsRouteAll(c: StageCosts, routedFraction: number): number {
  return (c.decodeMs + c.littleMs + c.bigMs) / (c.decodeMs + c.littleMs + routedFraction * c.bigMs);
}
