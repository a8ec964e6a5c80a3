/**
 * Conformance probe: a model's outputs on a few deterministic generated images, recorded
 * when a run is planned and compared by every worker that loads the model for that run. The
 * same file on another CPU, onnxruntime build or execution provider can give other numbers
 * (int8 kernels saturate on x86 CPUs without VNNI); the probe turns that into a refusal
 * instead of rows that silently differ.
 */
import sharp from 'sharp';
import { z } from 'zod';
import type { PreprocessSpec } from '../../config/schema.js';
import { preprocessImage } from '../image/preprocess.js';
import type { InferencePool } from '../inference/inference-pool.js';
import type { Platform } from '../inference/platform.js';
import { topK } from '../routing.js';

/** Classes recorded per probe image: enough to see a shift in the answer and its runners-up. */
const PROBE_TOP = 5;
const SIDE = 256;

/** The reference answer on one probe image: its top classes with their probabilities. */
export const ProbeOutput = z.object({
  image: z.string(),
  top: z.array(z.tuple([z.number().int().nonnegative(), z.number()])).min(1),
});
export type ProbeOutput = z.infer<typeof ProbeOutput>;

/** A model's reference outputs and the platform that produced them. */
export const Probe = z.object({
  outputs: z.array(ProbeOutput).min(1),
  provider: z.string(),
  platform: z.object({ arch: z.string(), cpuFlags: z.array(z.string()), onnxruntime: z.string() }),
});
export type Probe = z.infer<typeof Probe>;

/** How far a worker's probe outputs are from the reference. */
export interface ProbeComparison {
  /** Largest |Δp| over every reference image's recorded classes. */
  maxDiff: number;
  /** Images whose top-1 changed although the reference's lead exceeded the tolerance. */
  top1Changed: string[];
  ok: boolean;
}

/** xorshift32: the same noise on every machine. */
function noise(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x & 0xff;
  };
}

/** The probe images as raw RGB pixels, by name; pure arithmetic, so identical everywhere. */
export function probePixels(): Array<{ name: string; rgb: Uint8Array }> {
  const make = (fn: (x: number, y: number, c: number) => number) => {
    const rgb = new Uint8Array(SIDE * SIDE * 3);
    for (let y = 0; y < SIDE; y++) for (let x = 0; x < SIDE; x++) for (let c = 0; c < 3; c++) rgb[(y * SIDE + x) * 3 + c] = fn(x, y, c);
    return rgb;
  };
  const n1 = noise(0x9e3779b9);
  const n2 = noise(0x85ebca6b);
  return [
    { name: 'gradient', rgb: make((x, y, c) => (c === 0 ? x : c === 1 ? y : 255 - ((x + y) >> 1))) },
    { name: 'checker', rgb: make((x, y, c) => ((((x >> 5) + (y >> 5)) & 1) === 1 ? [230, 40, 30][c]! : [20, 60, 200][c]!)) },
    { name: 'rings', rgb: make((x, y, c) => Math.round(127.5 + 127.5 * Math.sin(Math.hypot(x - 128, y - 128) / (6 + 3 * c)))) },
    { name: 'noise', rgb: make(() => n1()) },
    { name: 'blocks', rgb: make((x, y, c) => (((x * 7 + y * 13) >> 4) * (c + 3) * 37) & 0xff) },
    { name: 'stripes', rgb: make((x, y, c) => (n2() >> 2) + (((x + 2 * y) >> 3) & 1 ? 150 : 40) - 10 * c) },
  ];
}

/** The probe images as PNG files (lossless, so every decoder sees the same pixels). */
export async function probeImages(): Promise<Array<{ name: string; bytes: Buffer }>> {
  return Promise.all(
    probePixels().map(async (p) => ({
      name: p.name,
      bytes: await sharp(p.rgb, { raw: { width: SIDE, height: SIDE, channels: 3 } })
        .png()
        .toBuffer(),
    })),
  );
}

/** Run the probe images through a loaded model, with its own preprocessing. */
export async function runProbe(pool: InferencePool, preprocess: PreprocessSpec, platform: Platform): Promise<Probe> {
  const images = await probeImages();
  const { io } = pool;
  const outputs: ProbeOutput[] = [];
  for (const image of images) {
    const tensor = await preprocessImage(image.bytes, preprocess, { height: io.height, width: io.width, dtype: io.inputDtype }, { maxPixels: SIDE * SIDE });
    const { probs } = await pool.inferAlone(tensor, 1);
    outputs.push({ image: image.name, top: topK(probs, PROBE_TOP).map((c) => [c, probs[c]!] as [number, number]) });
  }
  return { outputs, provider: pool.provider, platform };
}

/**
 * Compare a probe against the reference: every recorded probability within `tolerance`, and the
 * same top-1 wherever the reference's top-1 led its runner-up by more than the tolerance (a
 * near-tie may flip without meaning anything).
 */
export function compareProbe(reference: Probe, actual: Probe, tolerance: number): ProbeComparison {
  let maxDiff = 0;
  const top1Changed: string[] = [];
  for (const ref of reference.outputs) {
    const got = actual.outputs.find((o) => o.image === ref.image);
    if (!got) {
      top1Changed.push(ref.image);
      maxDiff = Number.POSITIVE_INFINITY;
      continue;
    }
    const gotProb = new Map(got.top);
    // A reference class that fell out of the worker's top list has at most the worker's last recorded probability.
    const floor = got.top[got.top.length - 1]![1];
    for (const [cls, p] of ref.top) maxDiff = Math.max(maxDiff, Math.abs(p - (gotProb.get(cls) ?? Math.min(floor, p))));
    const lead = ref.top.length > 1 ? ref.top[0]![1] - ref.top[1]![1] : Number.POSITIVE_INFINITY;
    if (lead > tolerance && got.top[0]![0] !== ref.top[0]![0]) top1Changed.push(ref.image);
  }
  return { maxDiff, top1Changed, ok: maxDiff <= tolerance && top1Changed.length === 0 };
}
