/**
 * BullMQ adapter for a run's listing beyond its first window (producers/run-listing.ts): the
 * merge role consumes the `listing` queue, one job per run. Each time the job runs, it lists
 * from the run's stored cursor until the window is full again, then puts itself back, delayed,
 * instead of holding a worker slot while batches run; the listing itself stays open in this
 * process for its next pass. A process killed mid-pass leaves the job
 * to stall and run again elsewhere, from the cursor saved after the last queued batches.
 * The same job writes the run's manifest shards whose batches are all counted
 * (pipeline/results/live-shards.ts), while listing and after, until every shard is written or
 * the run completes (its merge writes the rest); a run listed whole in its submitter's first pass
 * gets the job for its shards alone when it has more than one (producers/submit-run.ts).
 */
import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { DEFAULT_OUTPUT } from '../config/schema.js';
import { writeReadyShards, writesShardsLive } from '../pipeline/results/live-shards.js';
import { assertOwnsOutput, RunFencedError } from '../pipeline/results/run-marker.js';
import type { Stores } from '../pipeline/storage/stores.js';
import { ListingPlan } from '../producers/listing-cursor.js';
import { resumableSource } from '../producers/inputs/input-formats.js';
import { ListingFailedError, listingPass, OpenListings } from '../producers/run-listing.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import type { LockOptions } from '../queue/job-locks.js';
import { auditPartId, LISTING_QUEUE, ListingJob, parsePartId, partId, type RunSpec, warmupPartId } from '../queue/jobs.js';
import type { ListingState, RunTracker } from '../queue/run-tracker.js';
import { errorKind, failureFields, type WorkerLog } from './stage-worker.js';

/** How long a listing job whose run's window is full waits before it looks again. */
export const LISTING_POLL_MS = 500;

export interface ListingWorkerOptions {
  connection: Redis;
  prefix: string;
  tracker: RunTracker;
  queues: CascadeQueues;
  stores: Stores;
  log: WorkerLog;
  lockOptions?: LockOptions;
  /** Wait between looks at a full window (default LISTING_POLL_MS). */
  pollMs?: number;
}

/** What one run of a listing job did: listed (and no shard left to write while the run labels), still waiting, or nothing left. */
export type ListingOutcome = 'listed' | 'waiting' | 'nothing-to-do';

/** Consumes the listing queue. */
export class ListingWorker {
  readonly worker: Worker;
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;
  // Listings held open between this process's passes; the stored cursor decides whether one is still current.
  private readonly openListings = new OpenListings();
  // Shards a live pass failed to read (not merely not ready), per run: left to the final merge, which reports the error.
  private readonly failedShards = new Map<string, Set<number>>();

  constructor(private readonly o: ListingWorkerOptions) {
    this.connection = o.connection.duplicate();
    // Two runs' listings at once: one long pass (a large key list re-read on resume) does not stall every other run.
    this.worker = new Worker(LISTING_QUEUE, (job, token) => this.process(job, token), {
      connection: this.connection,
      prefix: o.prefix,
      concurrency: 2,
      ...o.lockOptions,
    });
    this.worker.on('failed', (job, err) => {
      if (err instanceof DelayedError) return;
      const fields = failureFields(job, err, 'listing');
      o.log(`listing: job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`, fields);
      const parsed = ListingJob.safeParse(job?.data);
      // Nothing lists the run any more: say so where `cascade status` looks (unless the pass did); resubmitting resumes it.
      if (parsed.success && (fields?.final || err instanceof UnrecoverableError)) void this.markFailed(parsed.data.runId, err.message);
    });
    this.worker.on('error', (err) => o.log(`listing: worker error: ${err.message}`, { level: 'warn', stage: 'listing', errorKind: errorKind(err), err }));
  }

  /** One look at a run's listing (exposed for tests): list while the window has room, then wait (delayed) or finish. */
  async process(job: Job, token?: string): Promise<ListingOutcome> {
    const { runId } = ListingJob.parse(job.data);
    const { tracker } = this.o;
    const [state, spec] = await Promise.all([tracker.listingState(runId), tracker.spec(runId)]);
    // Failed or fenced: nothing is left to list, nor shards to write.
    if (!state || !spec || state.failedReason) {
      await this.openListings.drop(runId);
      this.failedShards.delete(runId);
      return 'nothing-to-do';
    }
    // Listed already (in the submitter's one pass, or an earlier look finished it): only shards may be left.
    if (state.listed) {
      await this.openListings.drop(runId);
      // A job failed for good: the run waits for `cascade retry`, maybe for ever; its merge writes the shards left.
      if (state.jobFailure || (await this.shardsDone(spec, state))) {
        this.failedShards.delete(runId);
        return 'nothing-to-do';
      }
      return this.waitAgain(job, token);
    }
    if (!state.plan) throw new UnrecoverableError(`run ${runId} has no stored listing plan: only its submitter can list it`);
    const plan = ListingPlan.parse(JSON.parse(state.plan));
    try {
      const pass = await listingPass({
        spec,
        tracker,
        queues: this.o.queues,
        source: resumableSource(plan, this.o.stores),
        window: state.window ?? Number.POSITIVE_INFINITY,
        ...(state.windowBytes ? { windowBytes: state.windowBytes } : {}),
        warmup: null,
        fresh: false,
        openListings: this.openListings,
      });
      if (pass.done) this.o.log(`listing: run ${runId} listed: ${pass.images} images in ${pass.batches} batches`);
      const shardsDone = await this.shardsDone(spec, { ...state, listed: pass.done, batches: pass.batches });
      if (pass.done && shardsDone) return 'listed';
    } catch (err) {
      // The run is marked failed with the reason; the same submission takes it up once the source is fixed.
      if (err instanceof ListingFailedError) throw new UnrecoverableError(err.message);
      throw err;
    }
    return this.waitAgain(job, token);
  }

  /** Put the job back, delayed, for its next look. */
  private async waitAgain(job: Job, token: string | undefined): Promise<ListingOutcome> {
    if (!token) return 'waiting';
    await job.moveToDelayed(Date.now() + (this.o.pollMs ?? LISTING_POLL_MS), token);
    throw new DelayedError();
  }

  /**
   * Write the run's shards that are ready (pipeline/results/live-shards.ts); true when none is
   * left to write while the run labels: all written, the run complete (its merge writes the
   * rest), a run of one shard (the merge writes it), or an output another run took over. A pass
   * that fails is logged and tried again at the next look: it never fails the listing.
   */
  private async shardsDone(spec: RunSpec, state: Pick<ListingState, 'batches' | 'listed'>): Promise<boolean> {
    const output = spec.output ?? DEFAULT_OUTPUT;
    const runId = spec.runId;
    const noneLive = !output.parquet || (state.listed && !writesShardsLive(output, spec.batchSize, state.batches));
    if (noneLive || (await this.o.tracker.isComplete(runId))) {
      this.failedShards.delete(runId);
      return true;
    }
    const store = this.o.stores.open(spec.out);
    const skip = this.failedShards.get(runId) ?? new Set<number>();
    try {
      const pass = await writeReadyShards(
        store,
        {
          runId,
          stages: spec.stages.map((s) => s.name),
          batchSize: spec.batchSize,
          output,
          audits: spec.audit !== undefined,
          batches: state.batches,
          listed: state.listed,
        },
        {
          counted: (range) => (lane, stage) => {
            const kind = parsePartId(lane === 'stage' ? partId(0, stage) : lane === 'warmup' ? warmupPartId(0, stage) : auditPartId(0)).kind;
            return this.o.tracker.countedBatches(runId, kind, range.from, range.to);
          },
          assertOwner: () => assertOwnsOutput(store, runId),
          skip,
        },
      );
      for (const { shard, error } of pass.failed) {
        skip.add(shard);
        this.o.log(`listing: run ${runId}: shard ${shard} left to the merge: ${(error as Error).message}`, {
          level: 'warn',
          stage: 'listing',
          errorKind: errorKind(error),
        });
      }
      this.failedShards.set(runId, skip);
      if (pass.written.length) this.o.log(`listing: run ${runId}: manifest shards ${pass.written.join(', ')} written while the run labels`);
      if (pass.complete) this.failedShards.delete(runId);
      return pass.complete;
    } catch (err) {
      if (err instanceof RunFencedError) return true;
      this.o.log(`listing: run ${runId}: writing shards failed, tried again at the next look: ${(err as Error).message}`, {
        level: 'warn',
        stage: 'listing',
        errorKind: errorKind(err),
      });
      return false;
    }
  }

  private async markFailed(runId: string, message: string): Promise<void> {
    const state = await this.o.tracker.listingState(runId).catch(() => null);
    if (state && !state.failedReason) await this.o.tracker.markFailed(runId, `listing failed: ${message.split('\n')[0]}`).catch(() => undefined);
  }

  /** Stop taking listing jobs (a pass in progress finishes; the job waits, delayed, for the next process). */
  async close(): Promise<void> {
    await this.worker.close();
    await this.openListings.close();
    this.connection.disconnect();
  }
}
