/**
 * The classifying path of a stage job: borrow the run's model, classify the batch with the
 * stage's routing while the process's cost meter charges it, and write the batch's part. A
 * warm-up batch at a stage before the last forwards every answered image, keeping the answers.
 */
import type { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import type { Job } from 'bullmq';
import { classifyBatch, errorRow, type ClassifyDeps, type StageResult } from '../pipeline/classify-batch.js';
import type { CostMeter, MeterSlice } from '../pipeline/cost/cost-meter.js';
import type { InferencePool } from '../pipeline/inference/inference-pool.js';
import { type PartCost, partCost } from '../pipeline/cost/run-cost.js';
import { workerIdentity } from '../pipeline/inference/platform.js';
import type { ModelLease } from '../pipeline/models/model-cache.js';
import type { ProbeComparison } from '../pipeline/models/probe.js';
import type { StageRouting } from '../pipeline/routing-resolver.js';
import type { WarmupPart } from '../pipeline/results/warmup-part.js';
import type { WarmupAnswer } from '../pipeline/self-calibration.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { RunSpec, StageJob } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { type SessionNumerics, type WorkerClass, workerClassOf } from '../config/schema.js';
import type { AuditItem } from '../pipeline/audit/audit-part.js';
import { selectAudits } from './audit-job.js';
import { putPart } from './put-part.js';

/** What classifying a batch needs of its stage worker. */
export interface ClassifyContext {
  tracker: RunTracker;
  /** Borrow the model `spec` pins for stage `index`, verified, with the classify dependencies under the run's limits. */
  borrow(spec: RunSpec, index: number): Promise<{ lease: ModelLease; probe: ProbeComparison; numerics: SessionNumerics; deps: ClassifyDeps }>;
  /** The process's cost meters by worker class. */
  meters: Record<WorkerClass, CostMeter>;
  /** Weight of an inference call against a decode in the meter, where the call's own CPU is not measured apart. */
  inferWeight: number;
}

/** One batch of a stage job, as the stage job resolved it. */
export interface BatchAt {
  spec: RunSpec;
  data: StageJob;
  /** The images this job classifies (an ordinary job's warm-up images left out). */
  items: StageJob['items'];
  /** Warm-up images of the batch left out here. */
  skipped: number;
  warmupLane: boolean;
  store: ObjectStore;
  key: string;
}

/** Classify a batch and write its part; returns the stage's result, its cost and the audits its part promised. */
export async function classifyPart(
  job: Job,
  b: BatchAt,
  routing: StageRouting,
  ctx: ClassifyContext,
): Promise<{ result: StageResult; cost: PartCost; audits: AuditItem[] }> {
  const { spec, data } = b;
  const stage = spec.stages[data.stage]!;
  const isLast = data.stage === spec.stages.length - 1;
  // A model failure fails the job so BullMQ retries it; on the last attempt the images of
  // the failed call become error rows instead (other rows kept), so the run completes.
  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  // A model this worker cannot load or verify fails the job (another worker may take it);
  // it never turns into rows.
  // Under numerics 'auto' the lease says which kernels this worker chose; the part records them.
  const { lease, probe, numerics, deps } = await ctx.borrow(spec, data.stage);
  // Charged from here: opening the model is the worker's, not the batch's.
  const workerClass = workerClassOf(lease.model.pool.provider);
  const meter = ctx.meters[workerClass];
  const slice = meter.begin();
  let seconds = 0;
  let result: StageResult;
  // The warm-up lane's first stage records margin and pnorm (a rank run's reference is built from
  // them) and keeps every answered image's tensor for the next stage, which labels them all.
  const decision = {
    threshold: routing.threshold,
    metric: routing.metric,
    rankReference: routing.rankReference,
    ...(b.warmupLane ? { signals: !isLast, answersGoOn: !isLast } : {}),
  };
  try {
    const metering = meteredDeps(meter, slice, lease.model.pool, ctx.inferWeight);
    result = await classifyBatch(b.items, lease.model, decision, { ...deps, ...metering, inferenceErrorsAsRows: lastAttempt });
  } catch (err) {
    if (!lastAttempt) throw err;
    result = inferenceFailed(b.items, err);
  } finally {
    seconds = meter.end(slice);
    lease.release();
  }
  const cost = partCost(workerClass, seconds, result.stats, result.decoded);
  let warmupAnswers: WarmupAnswer[] | undefined;
  if (b.warmupLane && !isLast) ({ result, answers: warmupAnswers } = forwardAnswered(result, b.items));
  const audits = data.stage === 0 && !b.warmupLane ? selectAudits(spec, result.rows, b.items) : [];
  const part: WarmupPart = {
    runId: data.runId,
    batch: data.batch,
    stage: data.stage,
    stageName: stage.name,
    rows: result.rows,
    stats: result.stats,
    writer: { ...workerIdentity(), provider: lease.model.pool.provider, numerics, sha256: stage.model.sha256, probeMaxDiff: probe.maxDiff },
    ...(audits.length ? { audits: audits.length } : {}),
    ...(b.skipped ? { warmup: b.skipped } : {}),
    ...(warmupAnswers ? { warmupAnswers } : {}),
    cost,
    ...(result.forwardedConfidence.length ? { forwardedConfidence: result.forwardedConfidence } : {}),
  };
  await putPart(b.store, b.key, part, ctx.tracker);
  return { result, cost, audits };
}

/** What classifyBatch reports to a job's slice of the meter: its decodes and calls in flight, and each call's measured CPU. */
export function meteredDeps(
  meter: CostMeter,
  slice: MeterSlice,
  pool: Pick<InferencePool, 'intraOpThreads'>,
  inferWeight: number,
): Pick<ClassifyDeps, 'onWork' | 'onCallCpu' | 'inferWeight'> {
  return {
    onWork: (delta) => meter.work(slice, delta),
    onCallCpu: (seconds) => meter.charge(slice, seconds),
    // Where each call is charged its thread's CPU, only its session's other intra-op threads stay
    // in the shared clock for the call to weigh against decodes.
    inferWeight: meter.measuresCalls ? Math.max(0, (pool.intraOpThreads || 1) - 1) : inferWeight,
  };
}

/** A batch whose inference failed on its last attempt: every image an `inference` error row. */
function inferenceFailed(items: StageJob['items'], err: unknown): StageResult {
  const rows = items.map((item) => errorRow(item, 'inference', err));
  return {
    rows,
    forward: [],
    forwardedConfidence: [],
    decoded: 0,
    stats: { images: rows.length, accepted: 0, forwarded: 0, errors: rows.length, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0 },
  };
}

/**
 * A warm-up batch at a stage before the last: every answered image goes on (its final row is the
 * last stage's), with this stage's answer (and its margin and pnorm) kept for the certification;
 * error rows stay final here.
 */
export function forwardAnswered(
  r: StageResult,
  items: ReadonlyArray<{ pos: number; at?: SampleLocator }> = [],
): { result: StageResult; answers: WarmupAnswer[] } {
  const at = new Map(items.flatMap((i) => (i.at ? [[i.pos, i.at] as const] : [])));
  const errors = r.rows.filter((row) => row.error);
  const answered = r.rows.filter((row) => !row.error && row.label !== null && row.confidence !== null);
  return {
    result: {
      ...r,
      rows: errors,
      forward: answered.map((row) => ({ ref: row.key, pos: row.pos, ...(at.has(row.pos) ? { at: at.get(row.pos)! } : {}) })),
      forwardedConfidence: answered.map((row) => row.confidence!),
      stats: { ...r.stats, accepted: 0, forwarded: answered.length },
    },
    answers: answered.map((row) => ({ pos: row.pos, label: row.label!, confidence: row.confidence!, ...r.signals?.get(row.pos) })),
  };
}
