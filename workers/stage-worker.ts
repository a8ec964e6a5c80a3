/**
 * BullMQ adapter for one cascade stage: takes batch jobs off the stage's queue, borrows the
 * model the job's run pins (verified by hash and probe), runs the pipeline's classifyBatch
 * with the run's decision and limits, writes the batch's result part, forwards unsure images
 * to the next stage, and counts the part so the run's completion is detected exactly once.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { availableParallelism } from 'node:os';
import type { LockOptions } from '../queue/job-locks.js';
import type { Redis } from 'ioredis';
import { classifyBatch, errorRow, skipBatch, type ClassifyDeps, type StageDecision, type StageResult } from '../pipeline/classify-batch.js';
import { ResultPart, type StageStats } from '../pipeline/results/manifest.js';
import { partKey, warmupPartKey } from '../pipeline/results/output-layout.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';
import type { TensorCache } from '../pipeline/image/tensor-cache.js';
import { workerIdentity } from '../pipeline/inference/platform.js';
import type { ModelCache, ModelLease } from '../pipeline/models/model-cache.js';
import type { LoadedModel } from '../pipeline/models/loaded-model.js';
import type { ProbeComparison } from '../pipeline/models/probe.js';
import { processAuditJob, queueAudit, selectAudits } from './audit-job.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { AUDIT_JOB_NAME, DECIDE_JOB_NAME, DecideJob, partId as stagePartId, type RunSpec, StageJob, stageQueueName, warmupPartId } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';
import type { WarmupPart } from '../pipeline/results/warmup-part.js';
import { assertOwnsOutput, RunFencedError } from '../pipeline/results/run-marker.js';
import type { WarmupAnswer } from '../pipeline/self-calibration.js';
import { metricNeedsDecision, metricOf, queueDecision, runDecision, storedDecision } from '../queue/threshold-decision.js';
import { routingThreshold, skipsFirstStage } from '../pipeline/self-calibration.js';
import { type CostMeter, processMeters } from '../pipeline/cost/cost-meter.js';
import { type PartCost, partCost } from '../pipeline/cost/run-cost.js';
import { type SessionNumerics, type WorkerClass, workerClassOf } from '../config/schema.js';

export interface StageWorkerOptions {
  connection: Redis;
  prefix: string;
  /** The stage this worker serves, by name: its queue is stage-<name>. */
  stage: string;
  /** Where the models runs pin are opened and verified. */
  models: ModelCache;
  concurrency: number;
  /** Reads an image, refusing more than `maxBytes` (the run's limit). */
  fetch: (ref: string, maxBytes: number) => Promise<Buffer>;
  fetchConcurrency: number;
  tensorCache?: TensorCache;
  /** The object store of a run's output location. */
  openOutput: (out: string) => ObjectStore;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** Log a line; `fields.level` is warn/error for retries/final failures, the other fields are structured. */
  log: WorkerLog;
  /** Job lock and stalled-job settings (see JobLocks in config/schema.ts); BullMQ defaults when absent. */
  lockOptions?: LockOptions;
  /**
   * Shares of this process's machine time per worker class, one set for every stage worker of the
   * process (processMeters): each classified batch's part records its share. Absent: this worker's own.
   */
  meters?: Record<WorkerClass, CostMeter>;
  /** Called after each batch is counted (metrics); errorsByKind counts the batch's error rows. */
  onBatch?: (stage: string, stats: StageStats, errorsByKind: Record<string, number>, cost?: PartCost) => void;
}

/** A log function taking structured fields; `level` defaults to info. */
export type WorkerLog = (msg: string, fields?: { level?: 'debug' | 'info' | 'warn' | 'error'; [field: string]: unknown }) => void;

/** The kind of an error for logs and summaries: its code (ECONNREFUSED, ENOSPC …), else its name. */
export function errorKind(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null;
  return typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'Error';
}

/** Fields of a failed-job line: warn while BullMQ will retry it, error once its attempts are spent. */
export function failureFields(job: Job | undefined, err: Error, stage: string): Parameters<WorkerLog>[1] {
  const data = (job?.data ?? {}) as { runId?: unknown; batch?: unknown };
  const attempts = job?.opts.attempts ?? 1;
  const attempt = job?.attemptsMade ?? 0;
  return {
    level: attempt >= attempts ? 'error' : 'warn',
    runId: data.runId,
    stage,
    batch: data.batch,
    attempt,
    attempts,
    errorKind: errorKind(err),
    final: attempt >= attempts,
  };
}

/** Consumes one stage's queue until closed. */
export class StageWorker {
  readonly worker: Worker;
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;
  private readonly meters: Record<WorkerClass, CostMeter>;
  // An inference call keeps about every core busy (ORT's intra-op threads), a decode one.
  private readonly inferWeight = availableParallelism();

  constructor(private readonly o: StageWorkerOptions) {
    this.connection = o.connection.duplicate();
    this.meters = o.meters ?? processMeters();
    this.worker = new Worker(stageQueueName(o.stage), (job) => this.process(job), {
      connection: this.connection,
      prefix: o.prefix,
      concurrency: o.concurrency,
      autorun: true,
      ...o.lockOptions,
    });
    this.worker.on('failed', (job, err) => {
      o.log(`${o.stage}: job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`, failureFields(job, err, o.stage));
      if (job) void this.recordFinalFailure(job, err);
    });
    this.worker.on('error', (err) => o.log(`${o.stage}: worker error: ${err.message}`, { level: 'warn', stage: o.stage, errorKind: errorKind(err), err }));
  }

  /**
   * A job that failed for good (in BullMQ's failed set, not waiting out a backoff) is noted on its
   * run, so every view of the run says failed instead of running forever.
   */
  private async recordFinalFailure(job: Job, err: Error): Promise<void> {
    const runId = (job.data as { runId?: unknown } | undefined)?.runId;
    try {
      if (typeof runId === 'string' && job.id && (await job.isFailed())) await this.o.tracker.recordJobFailure(runId, job.id, err.message);
    } catch (e) {
      this.o.log(`${this.o.stage}: could not note job ${job.id}'s failure on its run: ${(e as Error).message}`, { level: 'warn', stage: this.o.stage });
    }
  }

  /** Borrow the model `spec` pins for stage `index`, verified; and the classify dependencies under the run's limits. */
  async borrow(spec: RunSpec, index: number): Promise<{ lease: ModelLease; probe: ProbeComparison; numerics: SessionNumerics; deps: ClassifyDeps }> {
    const stage = spec.stages[index]!;
    const { model, release, probe, numerics } = await this.o.models.acquire(stage.name, stage.model, spec.numerics, spec.probeTolerance, spec.runId);
    const { maxBytes, maxPixels } = spec.limits;
    const deps: ClassifyDeps = {
      fetch: (ref) => this.o.fetch(ref, maxBytes),
      maxPixels,
      fetchConcurrency: this.o.fetchConcurrency,
      tensorCache: this.o.tensorCache,
      inferChunk: inferChunk(model),
    };
    return { lease: { model, release }, probe, numerics, deps };
  }

  /** Process one batch job (exposed for tests). */
  async process(job: Job): Promise<{ accepted: number; forwarded: number; errors: number }> {
    if (job.name === AUDIT_JOB_NAME) return processAuditJob(job, { ...this.o, borrow: (spec, index) => this.borrow(spec, index) });
    if (job.name === DECIDE_JOB_NAME) {
      await runDecision(DecideJob.parse(job.data).runId, this.o);
      return { accepted: 0, forwarded: 0, errors: 0 };
    }
    const data = StageJob.parse(job.data);
    const spec = await this.o.tracker.spec(data.runId);
    if (!spec) throw new Error(`run ${data.runId} is unknown to this Redis (prefix ${this.o.prefix})`);
    const stage = spec.stages[data.stage];
    if (!stage || stage.name !== this.o.stage) throw new Error(`job for stage ${data.stage} (${stage?.name}) reached the ${this.o.stage} worker`);
    const warmupLane = data.lane === 'warmup';
    if (warmupLane && !spec.selfCalibration) throw new Error(`warm-up job of run ${data.runId}, which is not self-calibrating`);
    const isLast = data.stage === spec.stages.length - 1;
    // The warm-up lane answers every image at every stage; its first stage then forwards them all.
    const decision: StageDecision = warmupLane ? { ...warmupMetric(spec), threshold: null, signals: !isLast } : await this.routingOf(spec, data.stage);
    // Warm-up images of a batch are labelled in their own lane, never here as well.
    const items = warmupLane ? data.items : data.items.filter((i) => !i.warmup);
    const skipped = data.items.length - items.length;

    const partId = warmupLane ? warmupPartId(data.batch, data.stage) : stagePartId(data.batch, data.stage);
    const key = warmupLane ? warmupPartKey(data.batch, data.stage) : partKey(data.batch, data.stage);
    const store = this.o.openOutput(spec.out);
    // A retry of a batch whose part was already counted (the job died after counting) reuses that
    // part: classifying again could give other rows (a model failing now that worked then) that
    // contradict the counters and the images already forwarded.
    let result = (await this.o.tracker.isPartDone(data.runId, partId)) ? await readCountedPart(store, key, items) : null;
    // What classifying this batch cost (a replayed part's own figure; none for a batch of warm-up images only).
    let cost: PartCost | undefined = result?.cost;
    const replay = result !== null;
    let audits: ReturnType<typeof selectAudits>;
    if (result) {
      audits = data.stage === 0 && !warmupLane ? selectAudits(spec, result.rows) : [];
    } else if (decision.skip || items.length === 0) {
      // Nothing to classify: the run decided the cascade does not pay (this stage hands the batch
      // on unread), or the batch holds warm-up images only (its part records them, so the merge
      // reads their lane).
      audits = [];
      result = skipBatch(items);
      const part: ResultPart = {
        runId: data.runId,
        batch: data.batch,
        stage: data.stage,
        stageName: stage.name,
        rows: [],
        stats: result.stats,
        ...(items.length ? { skipped: items.length } : {}),
        ...(skipped ? { warmup: skipped } : {}),
      };
      await this.putPart(store, key, part);
    } else {
      // A model failure fails the job so BullMQ retries it; on the last attempt the images of
      // the failed call become error rows instead (other rows kept), so the run completes.
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // A model this worker cannot load or verify fails the job (another worker may take it);
      // it never turns into rows.
      // Under numerics 'auto' the lease says which kernels this worker chose; the part records them.
      const { lease, probe, numerics, deps } = await this.borrow(spec, data.stage);
      // Charged from here: opening the model is the worker's, not the batch's.
      const workerClass = workerClassOf(lease.model.pool.provider);
      const meter = this.meters[workerClass];
      const slice = meter.begin();
      let seconds = 0;
      try {
        const onWork = (delta: number) => meter.work(slice, delta);
        result = await classifyBatch(items, lease.model, decision, { ...deps, onWork, inferWeight: this.inferWeight, inferenceErrorsAsRows: lastAttempt });
      } catch (err) {
        if (!lastAttempt) throw err;
        const rows = items.map((item) => errorRow(item, 'inference', err));
        result = {
          rows,
          forward: [],
          forwardedConfidence: [],
          decoded: 0,
          stats: { images: rows.length, accepted: 0, forwarded: 0, errors: rows.length, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0 },
        };
      } finally {
        seconds = meter.end(slice);
        lease.release();
      }
      cost = partCost(workerClass, seconds, result.stats, result.decoded);
      let warmupAnswers: WarmupAnswer[] | undefined;
      if (warmupLane && !isLast) ({ result, answers: warmupAnswers } = forwardAnswered(result));
      audits = data.stage === 0 && !warmupLane ? selectAudits(spec, result.rows) : [];
      const part: WarmupPart = {
        runId: data.runId,
        batch: data.batch,
        stage: data.stage,
        stageName: stage.name,
        rows: result.rows,
        stats: result.stats,
        writer: { ...workerIdentity(), provider: lease.model.pool.provider, numerics, sha256: stage.model.sha256, probeMaxDiff: probe.maxDiff },
        ...(audits.length ? { audits: audits.length } : {}),
        ...(skipped ? { warmup: skipped } : {}),
        ...(warmupAnswers ? { warmupAnswers } : {}),
        cost,
        ...(result.forwardedConfidence.length ? { forwardedConfidence: result.forwardedConfidence } : {}),
      };
      await this.putPart(store, key, part);
    }

    const done: StageResult = result;
    const next = spec.stages[data.stage + 1];
    if (result.forward.length > 0) {
      if (!next) throw new Error(`stage ${stage.name} forwarded images but is the last stage`);
      const forward = result.forward.map(({ ref, pos }) => ({ ref, pos }));
      await this.o.queues.addStageJobs(next.name, [
        { runId: data.runId, batch: data.batch, stage: data.stage + 1, items: forward, ...(warmupLane ? { lane: 'warmup' as const } : {}) },
      ]);
    }
    const { images, accepted, forwarded, errors } = result.stats;
    const errorsByKind = countErrorKinds(done.rows);
    const mustMerge = await this.o.tracker.finishPart(data.runId, {
      id: partId,
      stage: data.stage,
      final: result.rows.length,
      counts: { images, accepted, forwarded, errors },
      audits: audits.length,
      ...(cost ? { cost } : {}),
      errorsByKind,
      ...(warmupLane ? { lane: 'warmup' as const } : spec.selfCalibration && data.stage === 0 ? { lane: 'first' as const } : {}),
    });
    // The last warm-up row completes the warm-up: the run's threshold can be decided.
    if (warmupLane && (await this.o.tracker.needsDecision(data.runId))) await queueDecision(this.o.queues, spec);
    // Queued only after the part promised its audits to the tracker, so an audit can never be
    // counted without its promise (which would let the run complete early).
    await queueAudit(this.o.queues, spec, data.batch, audits);
    if (mustMerge) await this.o.queues.queueMerge(data.runId, this.o.tracker);
    // A replay processed no images: metrics already counted them.
    const onBatch = this.o.onBatch;
    if (onBatch && !replay) onBatch(this.o.stage, done.stats, errorsByKind, cost);
    return { accepted, forwarded, errors };
  }

  /**
   * The threshold stage `index` routes ordinary images with. A self-calibrating run's first stage
   * uses the decision stored with the run; its jobs are queued only after it is stored, so a
   * missing one is a bug and fails the job rather than route without it.
   */
  /** How stage `index` of an ordinary batch routes: its threshold and metric, decided ones read from the run's stored decision. */
  private async routingOf(spec: RunSpec, index: number): Promise<StageDecision> {
    const t = spec.stages[index]!.threshold;
    // A big-only run (its calibration's verdict): every stage before the last hands its batches on unread.
    if (spec.route === 'big-only' && index < spec.stages.length - 1) return { threshold: null, metric: spec.metric, skip: true };
    const decided = typeof t === 'string';
    // A self-calibrating run's threshold and, under rank, its reference: one read of the stored decision.
    const decision = decided || metricNeedsDecision(spec) ? await storedDecision(this.o.tracker, spec.runId) : null;
    if (decided && !decision)
      throw new Error(`run ${spec.runId}: an ordinary batch reached stage ${spec.stages[index]!.name} before the threshold was decided`);
    if (decided && skipsFirstStage(decision!)) return { threshold: null, metric: spec.metric, skip: true };
    return { threshold: decided ? routingThreshold(decision!) : t, ...metricOf(spec, decision) };
  }

  /**
   * Write a batch's part, unless the run's output location now belongs to another run (taken over
   * with --overwrite): then the run is marked failed and the job fails for good, with no retry.
   */
  private async putPart(store: ObjectStore, key: string, part: ResultPart): Promise<void> {
    try {
      await assertOwnsOutput(store, part.runId);
    } catch (err) {
      if (!(err instanceof RunFencedError)) throw err;
      await this.o.tracker.markFailed(part.runId, err.message);
      throw new UnrecoverableError(err.message);
    }
    await store.put(key, JSON.stringify(part));
  }

  /** Stop taking jobs and wait for the active ones to finish. */
  async close(): Promise<void> {
    await this.worker.close();
    this.connection.disconnect();
  }
}

/** The part a counted batch wrote at `key`, as a stage result (forwarded = the job's `items` without a row); null if absent. */
async function readCountedPart(store: ObjectStore, key: string, items: StageJob['items']): Promise<(StageResult & { cost?: PartCost }) | null> {
  let part: ResultPart;
  try {
    part = await readJson(store, key, ResultPart);
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
  const answered = new Set(part.rows.map((r) => r.pos));
  return {
    rows: part.rows,
    forward: items.filter((i) => !answered.has(i.pos)),
    forwardedConfidence: part.forwardedConfidence ?? [],
    decoded: part.cost?.decoded ?? 0,
    stats: part.stats,
    ...(part.cost ? { cost: part.cost } : {}),
  };
}

/**
 * The metric of a run's warm-up lane. A self-calibrating rank run has no reference before its
 * decision, which the warm-up's answers build, so the lane's rows (final for warm-up images)
 * carry their margin, one of rank's two signals; its first stage also records margin and pnorm.
 */
export function warmupMetric(spec: Pick<RunSpec, 'metric' | 'rankReference'>): Pick<StageDecision, 'metric' | 'rankReference'> {
  if (spec.metric === 'rank' && !spec.rankReference) return { metric: 'margin' };
  return { metric: spec.metric, rankReference: spec.rankReference };
}

/**
 * A warm-up batch at a stage before the last: every answered image goes on (its final row is the
 * last stage's), with this stage's answer (and its margin and pnorm) kept for the certification;
 * error rows stay final here.
 */
export function forwardAnswered(r: StageResult): { result: StageResult; answers: WarmupAnswer[] } {
  const errors = r.rows.filter((row) => row.error);
  const answered = r.rows.filter((row) => !row.error && row.label !== null && row.confidence !== null);
  return {
    result: {
      ...r,
      rows: errors,
      forward: answered.map((row) => ({ ref: row.key, pos: row.pos })),
      forwardedConfidence: answered.map((row) => row.confidence!),
      stats: { ...r.stats, accepted: 0, forwarded: answered.length },
    },
    answers: answered.map((row) => ({ pos: row.pos, label: row.label!, confidence: row.confidence!, ...r.signals?.get(row.pos) })),
  };
}

/** Error rows of a batch by kind. */
function countErrorKinds(rows: ReadonlyArray<{ error: { kind: string } | null }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) if (row.error) counts[row.error.kind] = (counts[row.error.kind] ?? 0) + 1;
  return counts;
}

/**
 * Images per inference call within a job. A fixed-batch model runs its images in separate
 * session calls anyway, so it starts on the first few while the rest decode; a dynamic-batch
 * model gets the whole job in one call, its batches being what makes it fast.
 */
export function inferChunk(model: LoadedModel): number {
  return model.pool.io.fixedBatch !== null ? Math.max(8, model.pool.io.fixedBatch) : 0;
}
