/**
 * BullMQ adapter for one cascade stage: takes jobs off the stage's queue and hands each to its
 * kind's processor — a batch (stage-job.ts), an audit (audit-job.ts) or a self-calibrating run's
 * threshold decision (queue/threshold-decision.ts) — lending them the models the runs pin
 * (verified by hash and probe) and the process's cost meters.
 */
import { Worker, type Job } from 'bullmq';
import { availableParallelism } from 'node:os';
import type { LockOptions } from '../queue/job-locks.js';
import type { Redis } from 'ioredis';
import type { ClassifyDeps } from '../pipeline/classify-batch.js';
import type { StageStats } from '../pipeline/results/manifest.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { TensorCache } from '../pipeline/image/tensor-cache.js';
import type { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import type { ModelCache, ModelLease } from '../pipeline/models/model-cache.js';
import type { LoadedModel } from '../pipeline/models/loaded-model.js';
import type { ProbeComparison } from '../pipeline/models/probe.js';
import { processAuditJob } from './audit-job.js';
import { processStageJob } from './stage-job.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { AUDIT_JOB_NAME, DECIDE_JOB_NAME, DecideJob, IDLE_WAIT_SECONDS, type RunSpec } from '../queue/jobs.js';
import { shardConcurrency, stageQueuePlace } from '../queue/queue-shards.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { runDecision } from '../queue/threshold-decision.js';
import { type CostMeter, processMeters } from '../pipeline/cost/cost-meter.js';
import type { PartCost } from '../pipeline/cost/run-cost.js';
import type { SessionNumerics, WorkerClass } from '../config/schema.js';

export interface StageWorkerOptions {
  connection: Redis;
  prefix: string;
  /** The stage this worker serves, by name: its queue is stage-<name> (or its shards). */
  stage: string;
  /** Where the models runs pin are opened and verified. */
  models: ModelCache;
  concurrency: number;
  /** Reads an image (a sharded sample at `at`), refusing more than `maxBytes` (the run's limit). */
  fetch: (ref: string, maxBytes: number, at?: SampleLocator) => Promise<Buffer>;
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

/** Consumes one stage's queue (every shard of it, see queue/queue-shards.ts) until closed. */
export class StageWorker {
  /** The BullMQ worker of each shard queue of the stage (one unless sharded). */
  readonly workers: Worker[];
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;
  private readonly meters: Record<WorkerClass, CostMeter>;
  // An inference call keeps about every core busy (ORT's intra-op threads), a decode one.
  private readonly inferWeight = availableParallelism();

  constructor(private readonly o: StageWorkerOptions) {
    this.connection = o.connection.duplicate();
    this.meters = o.meters ?? processMeters();
    const shards = o.queues.shards;
    // The process's concurrency for the stage is split over its shards, not multiplied by them.
    const budget = shardConcurrency(o.concurrency, shards);
    this.workers = budget.map((concurrency, k) => {
      const place = stageQueuePlace(o.prefix, o.stage, k, shards);
      const worker = new Worker(place.name, (job) => this.process(job), {
        connection: this.connection,
        prefix: place.prefix,
        concurrency,
        drainDelay: IDLE_WAIT_SECONDS,
        autorun: true,
        ...o.lockOptions,
      });
      worker.on('failed', (job, err) => {
        o.log(`${o.stage}: job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`, failureFields(job, err, o.stage));
        if (job) void this.recordFinalFailure(job, err);
      });
      worker.on('error', (err) => o.log(`${o.stage}: worker error: ${err.message}`, { level: 'warn', stage: o.stage, errorKind: errorKind(err), err }));
      return worker;
    });
  }

  /** The BullMQ worker of the stage's first (or only) shard queue. */
  get worker(): Worker {
    return this.workers[0]!;
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
      fetch: (ref, at) => this.o.fetch(ref, maxBytes, at),
      maxPixels,
      fetchConcurrency: this.o.fetchConcurrency,
      tensorCache: this.o.tensorCache,
      inferChunk: inferChunk(model),
    };
    return { lease: { model, release }, probe, numerics, deps };
  }

  /** Process one job of this stage's queue, by its kind (exposed for tests). */
  async process(job: Job): Promise<{ accepted: number; forwarded: number; errors: number }> {
    const ctx = { ...this.o, borrow: (spec: RunSpec, index: number) => this.borrow(spec, index), meters: this.meters, inferWeight: this.inferWeight };
    if (job.name === AUDIT_JOB_NAME) return processAuditJob(job, ctx);
    if (job.name === DECIDE_JOB_NAME) {
      await runDecision(DecideJob.parse(job.data).runId, this.o);
      return { accepted: 0, forwarded: 0, errors: 0 };
    }
    return processStageJob(job, ctx);
  }

  /** Stop taking jobs and wait for the active ones to finish. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    this.connection.disconnect();
  }
}

/**
 * Images per inference call within a job. A fixed-batch model runs its images in separate
 * session calls anyway, so it starts on the first few while the rest decode; a dynamic-batch
 * model gets the whole job in one call, its batches being what makes it fast.
 */
export function inferChunk(model: LoadedModel): number {
  return model.pool.io.fixedBatch !== null ? Math.max(8, model.pool.io.fixedBatch) : 0;
}
