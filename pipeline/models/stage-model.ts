/**
 * Turns a model spec into a ready stage: an inference pool with the model loaded, its
 * labels, and its compute cost (from the spec, or counted from the ONNX graph).
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ModelSpec, Numerics } from '../../config/schema.js';
import type { StageModel } from '../classify-batch.js';
import { InferencePool } from '../inference/inference-pool.js';
import { loadLabels } from './labels.js';
import { countMacs } from '../onnx/macs.js';
import { ModelLoadError } from '../inference/model-session.js';
import type { RuntimeOptions } from './model-cache.js';

/** An open model serving a stage. */
export interface LoadedModel extends StageModel {
  modelPath: string;
  /** sha256 of the model file (null where it was opened by path without pinning). */
  sha256: string | null;
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

/**
 * Open a model from its spec as stage `name`, unpinned (calibration scoring, tools); fails fast if
 * the model or labels cannot load. Runs open their models through ModelCache instead.
 */
export async function loadStageModel(name: string, spec: ModelSpec, runtime: RuntimeOptions & { numerics: Numerics }, log?: (msg: string) => void): Promise<LoadedModel & { gmacsPerImage: number }> {
  const gmacsPerImage = await modelGmacs(spec);
  const labels = spec.labels ? await loadLabels(spec.labels) : null;
  const pool = await InferencePool.open(spec.path, {
    executionProviders: runtime.executionProviders,
    intraOpThreads: runtime.intraOpThreads,
    threads: runtime.threads,
    accumulateMs: runtime.accumulateMs,
    output: spec.output,
    maxBatch: spec.maxBatch,
    graphOptimization: spec.graphOptimization,
    numerics: runtime.numerics,
  });
  const { io } = pool;
  log?.(
    `${name}: ${spec.name ?? basename(spec.path)} on ${pool.provider} (${runtime.threads} thread(s)), input ${io.inputName} ${io.inputDtype} ` +
      `[${io.fixedBatch ?? 'N'},${io.channels},${io.height},${io.width}], ${gmacsPerImage.toFixed(3)} GMACs/image`,
  );
  return { name, pool, preprocess: spec.preprocess, labels, modelPath: spec.path, sha256: null, gmacsPerImage, close: () => pool.close() };
}
