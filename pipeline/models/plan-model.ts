/**
 * Planning a run's models: read each model (and label) file once, hash it, count its GMACs,
 * open it and record its conformance probe, giving the pin every worker will hold it to.
 */
import { basename } from 'node:path';
import { type ModelSpec, type Numerics, referenceNumerics } from '../../config/schema.js';
import { ModelLoadError } from '../inference/model-session.js';
import { countMacs } from '../onnx/macs.js';
import type { ModelCache } from './model-cache.js';
import { type ModelPin, sha256Hex } from './model-pin.js';

/** A stage's model as planned: its pin and its compute per image. */
export interface PlannedModel {
  pin: ModelPin;
  gmacsPerImage: number;
}

/**
 * Pin `spec` for stage `stage`: content hashes, GMACs (spec's figure or counted) and the probe on
 * this machine, with exact numerics unless the run's are native (an 'auto' run is held to exact).
 */
export async function planModel(stage: string, spec: ModelSpec, numerics: Numerics, cache: ModelCache): Promise<PlannedModel> {
  const bytes = await cache.readFile(spec.path).catch((err: Error) => {
    throw new ModelLoadError(`cannot read model ${spec.path}: ${err.message}`);
  });
  let gmacsPerImage = spec.gmacs;
  if (gmacsPerImage === undefined) {
    try {
      gmacsPerImage = countMacs(bytes).macs / 1e9;
    } catch (err) {
      throw new ModelLoadError(`cannot read model ${spec.path}: not a valid ONNX file (${(err as Error).message})`);
    }
  }
  let labels: ModelPin['labels'] = null;
  if (spec.labels) {
    const path = spec.labels;
    const text = await cache.readFile(path).catch((err: Error) => {
      throw new ModelLoadError(`cannot read labels ${path}: ${err.message}`);
    });
    labels = { path, sha256: sha256Hex(text) };
  }
  const file = {
    name: spec.name ?? basename(spec.path),
    path: spec.path,
    sha256: sha256Hex(bytes),
    labels,
    preprocess: spec.preprocess,
    output: spec.output,
    graphOptimization: spec.graphOptimization,
    maxBatch: spec.maxBatch,
  };
  return { pin: { ...file, probe: await cache.referenceProbe(stage, file, referenceNumerics(numerics)) }, gmacsPerImage };
}
