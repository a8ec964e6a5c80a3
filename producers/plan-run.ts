/**
 * Building a RunSpec from a validated config: each stage's model is read, hashed, opened and
 * probed once (pipeline/models/plan-model.ts), so the run names its models by content and every
 * worker is held to them. Shared by `cascade run`, `cascade submit` and `schedule add`, so a
 * run started any of these ways is the same run.
 */
import { resolve } from 'node:path';
import type { CascadeConfig } from '../config/schema.js';
import { configuredStages } from '../config/stages.js';
import { ModelCache } from '../pipeline/models/model-cache.js';
import type { AnyCalibrationFile } from '../config/calibration.js';
import { describePlatform } from '../pipeline/inference/platform.js';
import { shortHash } from '../pipeline/models/model-pin.js';
import { planModel } from '../pipeline/models/plan-model.js';
import { defaultProbeCacheDir, ProbeCache } from '../pipeline/models/probe-cache.js';
import { compareProbe, Probe } from '../pipeline/models/probe.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { isRemoteUrl } from '../pipeline/storage/location.js';
import type { Stores } from '../pipeline/storage/stores.js';
import { RunId, RunSpec } from '../queue/jobs.js';
import { DECIDED_AT_WARMUP } from '../pipeline/routing-resolver.js';
import { ConfigError } from '../config/load-config.js';
import { deriveRunId, runIdentity } from './submit-run.js';

/** A model cache for a process that only plans (submit, schedule add): one thread per model, on the configured providers. */
export function planningModels(config: CascadeConfig, stores: Stores): ModelCache {
  return new ModelCache({
    runtime: { executionProviders: config.executionProviders, threads: 1, intraOpThreads: config.intraOpThreads },
    capacity: 1,
    read: (ref) => fetchRef(ref, stores),
    downloadDir: config.modelDir,
    probeCache: new ProbeCache(defaultProbeCacheDir()),
  });
}

/** Local paths become absolute so that workers elsewhere in the filesystem resolve them alike. */
export function absoluteRef(ref: string): string {
  return isRemoteUrl(ref) ? ref : resolve(ref);
}

/** The run-wide settings of a config that decide its rows (besides the stages). */
export function runSettings(
  config: CascadeConfig,
): Pick<RunSpec, 'metric' | 'rankReference' | 'batchSize' | 'numerics' | 'limits' | 'probeTolerance' | 'audit' | 'columns'> {
  const { metric, rankReference, batchSize, numerics, limits, probeTolerance, audit } = config;
  const columns = config.sources.columns;
  // The reference decides a rank run's rows; under another metric it would only change the run id.
  return {
    metric,
    ...(metric === 'rank' ? { rankReference } : {}),
    batchSize,
    numerics,
    limits,
    probeTolerance,
    ...(audit ? { audit } : {}),
    // Which columns a Parquet source is read from decides its rows; absent, the run id is as before.
    ...(columns && Object.keys(columns).length ? { columns } : {}),
  };
}

/** The stages of a run spec for `config`: each model pinned (hash, probe) and its GMACs per image. */
export async function planStages(config: CascadeConfig, models: ModelCache): Promise<RunSpec['stages']> {
  const stages = [];
  // One at a time: each opens a model, and a planner need not hold them all open at once.
  for (const s of configuredStages(config)) {
    const { pin, gmacsPerImage } = await planModel(s.name, s.spec, config.numerics, models);
    stages.push({ name: s.name, model: pin, gmacsPerImage, threshold: s.threshold });
  }
  return stages;
}

/**
 * A complete run spec for `source` → `out`, so every way of starting a run derives the same id for
 * the same run. With `selfCalibration`, the first stage's threshold is decided from a warm-up
 * sample at run time (two-stage cascades only: the guarantee is on the first stage's kept images
 * against the last stage), and the target, δ and warm-up size are part of the run's identity;
 * under metric rank its reference is built from the same warm-up, at run time.
 */
export async function planRun(
  config: CascadeConfig,
  source: string,
  out: string,
  models: ModelCache,
  runId?: string,
  selfCalibration?: NonNullable<RunSpec['selfCalibration']>,
): Promise<RunSpec> {
  if (selfCalibration && configuredStages(config).length !== 2)
    throw new ConfigError(`--target-agreement decides the threshold of a two-stage cascade; this config has ${configuredStages(config).length} stages`);
  const planned = await planStages(config, models);
  const stages = selfCalibration ? planned.map((s, i) => (i === 0 ? { ...s, threshold: DECIDED_AT_WARMUP } : s)) : planned;
  const { rankReference, ...settings } = runSettings(config);
  // A self-calibrating rank run ranks against its own warm-up, never a reference from elsewhere.
  const reference = rankReference && !selfCalibration ? { rankReference } : {};
  const route = config.route === 'big-only' ? { route: 'big-only' as const } : {};
  const body = {
    source: absoluteRef(source),
    out: absoluteRef(out),
    stages,
    ...settings,
    ...reference,
    ...route,
    ...(selfCalibration ? { selfCalibration } : {}),
  };
  const id = RunId.parse(runId ?? deriveRunId(runIdentity(body)));
  const layout = config.queues.shards === 1 ? {} : { queueShards: config.queues.shards };
  return RunSpec.parse({ runId: id, ...body, prices: config.prices, output: config.output, ...layout, createdAt: new Date().toISOString() });
}

/**
 * Whether a run may use a calibration made elsewhere: each stage the same model bytes, and this
 * machine's probe within the run's tolerance of the calibrating machine's (otherwise its
 * thresholds would route other answers). Returns the problem, or null. Calibrations written
 * before pins carry none and are taken on trust, as before.
 */
export function calibrationConformance(cal: AnyCalibrationFile, run: Pick<RunSpec, 'stages' | 'probeTolerance'>): string | null {
  const refs = 'kind' in cal ? cal.stages : [cal.little, cal.big];
  for (const [i, ref] of refs.entries()) {
    const stage = run.stages[i];
    if (!ref.pin || !stage) continue;
    if (ref.pin.sha256 !== stage.model.sha256)
      return `it measured ${ref.name} with sha256 ${shortHash(ref.pin.sha256)}, but this run's ${stage.name} model ${stage.model.path} has ${shortHash(stage.model.sha256)}`;
    const probe = Probe.safeParse(ref.pin.probe);
    if (!probe.success) return `its probe of ${ref.name} is unreadable`;
    const c = compareProbe(probe.data, stage.model.probe, run.probeTolerance);
    if (!c.ok) {
      return (
        `${ref.name} answers differently here: its probe differs by up to ${c.maxDiff.toFixed(4)} (tolerance ${run.probeTolerance}) between ` +
        `the calibrating machine (${describePlatform(probe.data.platform)}, numerics ${ref.pin.numerics}) and this one (${describePlatform(stage.model.probe.platform)})`
      );
    }
  }
  return null;
}
