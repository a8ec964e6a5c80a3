/**
 * BullMQ adapter for the merge step: when a run completes, one merge job runs the pipeline's
 * steps — mergeRun (manifest), drawRunPlots, writeSummary — and records the summary in the run's
 * Redis state.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { assertOwnsOutput, RunFencedError } from '../pipeline/results/run-marker.js';
import type { LockOptions } from '../queue/job-locks.js';
import type { Redis } from 'ioredis';
import { mergeRun, writeSummary } from '../pipeline/results/merge-run.js';
import { drawRunPlots } from '../pipeline/plots/run-plots.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import { IDLE_WAIT_SECONDS, MERGE_QUEUE, MergeJob } from '../queue/jobs.js';
import { storedDecision } from '../queue/threshold-decision.js';
import { recordedThreshold, resolveRouting } from '../pipeline/routing-resolver.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { errorKind, failureFields, type WorkerLog } from './stage-worker.js';

export interface MergeWorkerOptions {
  connection: Redis;
  prefix: string;
  openOutput: (out: string) => ObjectStore;
  tracker: RunTracker;
  log: WorkerLog;
  /** Job lock and stalled-job settings; BullMQ defaults when absent. */
  lockOptions?: LockOptions;
  /** Called once per run this worker merged, or whose merge failed for good (metrics). */
  onRunFinished?: (runId: string, outcome: 'merged' | 'failed') => void;
}

/** Why a run planned big-only sent its images straight to the last stage. */
const BIG_ONLY_BY_VERDICT = "its calibration's cost verdict is big-only: the cascade would not cost less than the big model alone (calib.json cost)";

/** Consumes the merge queue. */
export class MergeWorker {
  readonly worker: Worker;
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;

  constructor(private readonly o: MergeWorkerOptions) {
    this.connection = o.connection.duplicate();
    this.worker = new Worker(MERGE_QUEUE, (job) => this.process(job), {
      connection: this.connection,
      prefix: o.prefix,
      concurrency: 1,
      drainDelay: IDLE_WAIT_SECONDS,
      ...o.lockOptions,
    });
    this.worker.on('failed', (job, err) => {
      o.log(`merge: job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`, failureFields(job, err, 'merge'));
      if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
        const { runId } = MergeJob.parse(job.data);
        void o.tracker.markMergeFailed(runId, err.message);
        o.onRunFinished?.(runId, 'failed');
      }
    });
    this.worker.on('completed', (job) => o.onRunFinished?.(MergeJob.parse(job.data).runId, 'merged'));
    this.worker.on('error', (err) => o.log(`merge: worker error: ${err.message}`, { level: 'warn', stage: 'merge', errorKind: errorKind(err), err }));
  }

  /** Merge one run (exposed for tests). */
  async process(job: Job): Promise<void> {
    const { runId } = MergeJob.parse(job.data);
    const progress = await this.o.tracker.progress(runId);
    if (!progress) throw new Error(`run ${runId} is unknown`);
    const { spec } = progress;
    const store = this.o.openOutput(spec.out);
    // A run whose location was taken over (--overwrite) must not write its manifest over the new run's.
    try {
      await assertOwnsOutput(store, runId);
    } catch (err) {
      if (!(err instanceof RunFencedError)) throw err;
      await this.o.tracker.markFailed(runId, err.message);
      throw new UnrecoverableError(err.message);
    }
    const decision = spec.selfCalibration ? await storedDecision(this.o.tracker, runId) : null;
    // Each stage's threshold as routed (a self-calibrating run's from its stored decision), as the summary records it.
    const thresholds = spec.stages.map((_, i) => recordedThreshold(resolveRouting(spec, i, decision)));
    const { summary, plots } = await mergeRun(store, {
      runId,
      source: spec.source,
      out: spec.out,
      threshold: thresholds[0] ?? 0,
      metric: spec.metric,
      ...(spec.selfCalibration
        ? { selfCalibration: { targetAgreement: spec.selfCalibration.targetAgreement, delta: spec.selfCalibration.delta, decision } }
        : {}),
      stages: spec.stages.map((s, i) => ({
        name: s.name,
        gmacsPerImage: s.gmacsPerImage,
        threshold: thresholds[i] ?? null,
        model: { name: s.model.name, path: s.model.path, sha256: s.model.sha256 },
      })),
      numerics: spec.numerics,
      probeTolerance: spec.probeTolerance,
      ...(spec.prices ? { prices: spec.prices } : {}),
      // Audits of a certified self-calibrating run watch for drift below the certified bound.
      audit: spec.audit && decision?.certified ? { ...spec.audit, expectAgreement: decision.bound } : spec.audit,
      batches: progress.batches,
      batchSize: spec.batchSize,
      duplicates: progress.duplicates,
      listedImages: progress.total ?? progress.listedImages,
      ...(spec.output ? { output: spec.output } : {}),
      startedAt: new Date(progress.startedAt ?? spec.createdAt),
      ...(resolveRouting(spec, 0, decision).bigOnly === 'calibration-verdict' ? { route: { route: 'big-only' as const, reason: BIG_ONLY_BY_VERDICT } } : {}),
      ...(spec.reviewCalibration ? { reviewCalibration: spec.reviewCalibration } : {}),
    });
    await drawRunPlots(store, plots);
    await writeSummary(store, summary);
    await this.o.tracker.markMerged(runId, JSON.stringify(summary));
    this.o.log(
      `merge: run ${runId} merged: ${summary.images} images, ${(summary.fractionToBig * 100).toFixed(1)}% to big, ${(summary.macs.saved * 100).toFixed(1)}% MACs saved`,
    );
  }

  /** Stop taking merge jobs. */
  async close(): Promise<void> {
    await this.worker.close();
    this.connection.disconnect();
  }
}
