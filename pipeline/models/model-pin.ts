/**
 * What a run records about each stage's model so that every worker labels with exactly that
 * model: the file's content hash, everything that turns an image into the model's rows
 * (preprocessing, output mode, optimisation level, label file), and the conformance probe.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ModelSpec, PreprocessSpec } from '../../config/schema.js';
import { Probe } from './probe.js';

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 is 64 lower-case hex digits');

/** A stage's model as a run pins it. */
export const ModelPin = z.object({
  /** Display name (spec name or file name). */
  name: z.string().min(1),
  /** Absolute local path or s3:// URL, as every worker must be able to read it. */
  path: z.string().min(1),
  sha256: Sha256,
  labels: z.object({ path: z.string().min(1), sha256: Sha256 }).nullable(),
  preprocess: PreprocessSpec,
  output: ModelSpec.shape.output.unwrap(),
  graphOptimization: ModelSpec.shape.graphOptimization.unwrap(),
  /** Largest inference batch for a model with a dynamic batch dimension (a worker may lower it). */
  maxBatch: z.number().int().positive(),
  /** Reference outputs on the probe images, from the process that planned the run. */
  probe: Probe,
});
export type ModelPin = z.infer<typeof ModelPin>;

/** The sha256 of some bytes, as hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A short form of a hash for messages. */
export function shortHash(hex: string): string {
  return hex.slice(0, 12);
}
