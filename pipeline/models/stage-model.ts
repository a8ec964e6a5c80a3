/**
 * Turns a model spec into a ready stage: an inference pool with the model loaded, its
 * labels, and its compute cost (from the spec, or counted from the ONNX graph).
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ExecutionProvider, ModelSpec } from '../../config/schema.js';
import type { StageModel } from '../classify-batch.js';
import { InferencePool } from '../inference/inference-pool.js';
import { loadLabels } from './labels.js';
import { countMacs } from '../onnx/macs.js';
import { ModelLoadError } from '../inference/model-session.js';

export interface RuntimeOptions {
  executionProviders: readonly ExecutionProvider[];
  threads: number;
  intraOpThreads: number;
  /** See PoolOptions.accumulateMs. */
  accumulateMs?: number;
}

export interface LoadedStage extends StageModel {
  modelPath: string;
  gmacsPerImage: number;
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

/** Open a model as a cascade stage named `name`; fails fast if the model or labels cannot load. */
export async function loadStageModel(name: string, spec: ModelSpec, runtime: RuntimeOptions, log?: (msg: string) => void): Promise<LoadedStage> {
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
  });
  const { io } = pool;
  log?.(
    `${name}: ${spec.name ?? basename(spec.path)} on ${pool.provider} (${runtime.threads} thread(s)), input ${io.inputName} ${io.inputDtype} ` +
      `[${io.fixedBatch ?? 'N'},${io.channels},${io.height},${io.width}], ${gmacsPerImage.toFixed(3)} GMACs/image`,
  );
  return { name, pool, preprocess: spec.preprocess, labels, modelPath: spec.path, gmacsPerImage, close: () => pool.close() };
}
