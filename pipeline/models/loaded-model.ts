/**
 * An open model as the pipeline uses it: the view one stage's classification needs (its
 * inference pool, preprocessing and labels), and the handle a model cache hands out.
 */
import { readFile } from 'node:fs/promises';
import type { ModelSpec, PreprocessSpec } from '../../config/schema.js';
import type { InferencePool } from '../inference/inference-pool.js';
import { ModelLoadError } from '../inference/model-session.js';
import { countMacs } from '../onnx/macs.js';

/** A model as one stage of the cascade sees it. */
export interface StageModel {
  /** The stage's name (rows record it). */
  name: string;
  pool: InferencePool;
  preprocess: PreprocessSpec;
  labels: string[] | null;
}

/** An open model serving a stage, from a ModelCache. */
export interface LoadedModel extends StageModel {
  modelPath: string;
  /** sha256 of the model file. */
  sha256: string;
  close(): Promise<void>;
}

/** GMACs per image: the spec's figure if given, else counted from the graph. */
export async function modelGmacs(spec: Pick<ModelSpec, 'path' | 'gmacs'>): Promise<number> {
  if (spec.gmacs !== undefined) return spec.gmacs;
  const bytes = await readFile(spec.path).catch((err: Error) => {
    throw new ModelLoadError(`cannot read model ${spec.path}: ${err.message}`);
  });
  try {
    return countMacs(bytes).macs / 1e9;
  } catch (err) {
    throw new ModelLoadError(`cannot read model ${spec.path}: not a valid ONNX file (${(err as Error).message})`);
  }
}
