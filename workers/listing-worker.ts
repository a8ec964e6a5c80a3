/**
 * BullMQ adapter for a run's listing beyond its first window (producers/run-listing.ts): the
 * merge role consumes the `listing` queue, one job per run. Each time the job runs, it lists
 * from the run's stored cursor until the window is full again, then puts itself back, delayed,
 * instead of holding a worker slot while batches run; the listing itself stays open in this
 * process for its next pass. A process killed mid-pass leaves the job
 * to stall and run again elsewhere, from the cursor saved after the last queued batches.
 */
import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Stores } from '../pipeline/storage/stores.js';
import { ListingPlan } from '../producers/listing-cursor.js';
import { resumableSource } from '../producers/inputs/input-formats.js';
import { ListingFailedError, listingPass, OpenListings } from '../producers/run-listing.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import type { LockOptions } from '../queue/job-locks.js';
import { LISTING_QUEUE, ListingJob } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';
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

/** What one run of a listing job did. */
export type ListingOutcome = 'listed' | 'waiting' | 'nothing-to-do';

/** Consumes the listing queue. */
export class ListingWorker {
  readonly worker: Worker;
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;
  // Listings held open between this process's passes; the stored cursor decides whether one is still current.
  private readonly openListings = new OpenListings();

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
    // Listed already (a resubmission finished it), failed or fenced: nothing is left to list.
    if (!state || !spec || state.listed || state.failedReason) {
      await this.openListings.drop(runId);
      return 'nothing-to-do';
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
      if (pass.done) {
        this.o.log(`listing: run ${runId} listed: ${pass.images} images in ${pass.batches} batches`);
        return 'listed';
      }
    } catch (err) {
      // The run is marked failed with the reason; the same submission takes it up once the source is fixed.
      if (err instanceof ListingFailedError) throw new UnrecoverableError(err.message);
      throw err;
    }
    if (!token) return 'waiting';
    await job.moveToDelayed(Date.now() + (this.o.pollMs ?? LISTING_POLL_MS), token);
    throw new DelayedError();
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
