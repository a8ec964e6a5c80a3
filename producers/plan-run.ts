/**
 * Building a RunSpec from a validated config without starting any inference: stage GMACs
 * come from the spec or are counted from the ONNX graph. Shared by `cascade submit` and
 * the scheduler role, so a run submitted either way is the same run `cascade run` makes.
 */
import { resolve } from 'node:path';
import type { CascadeConfig } from '../config/schema.js';
import { isS3Url } from '../pipeline/storage/location.js';
import { modelGmacs } from '../pipeline/models/stage-model.js';
import { configuredStages } from '../config/stages.js';
import { RunId, RunSpec } from '../queue/jobs.js';
import { deriveRunId } from './submit-run.js';

/** Local paths become absolute so that workers elsewhere in the filesystem resolve them alike. */
export function absoluteRef(ref: string): string {
  return isS3Url(ref) ? ref : resolve(ref);
}

/** The stages of a run spec for `config`, with each model's GMACs per image. */
export async function planStages(config: CascadeConfig): Promise<RunSpec['stages']> {
  return Promise.all(configuredStages(config).map(async (s) => ({ name: s.name, modelPath: s.spec.path, gmacsPerImage: await modelGmacs(s.spec), threshold: s.threshold })));
}

/**
 * A complete run spec for `source` → `out`, so every way of starting a run derives the same id
 * for the same run. `stages` may be passed by a caller that has loaded the models already.
 */
export async function planRun(config: CascadeConfig, source: string, out: string, runId?: string, stages?: RunSpec['stages']): Promise<RunSpec> {
  stages ??= await planStages(config);
  const src = absoluteRef(source);
  const dest = absoluteRef(out);
  const audit = config.audit;
  const id = RunId.parse(runId ?? deriveRunId({ src, out: dest, stages, metric: config.metric, batchSize: config.batchSize, ...(audit ? { audit } : {}) }));
  return RunSpec.parse({ runId: id, source: src, out: dest, metric: config.metric, batchSize: config.batchSize, stages, ...(audit ? { audit } : {}), createdAt: new Date().toISOString() });
}
