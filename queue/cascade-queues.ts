/**
 * The queues of one cascade (a stage queue per model, plus the merge queue) and the two
 * ways jobs enter them: stage batches and the once-per-run merge.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EVENTS_MAX_LEN, JOB_OPTIONS, LISTING_QUEUE, MERGE_QUEUE, laneJobId, listingJobId, mergeJobId, type StageJob } from './jobs.js';
import { shardOfBatch, stageQueuePlace } from './queue-shards.js';
import type { RunTracker } from './run-tracker.js';

/**
 * `queue` with a listener for its connection's errors. A Queue re-emits them, and without a
 * listener BullMQ prints each raw (console.error), AUTH arguments and password included. The
 * connection's owner reports them once: watchRedis in a worker, waitForRedis in a command.
 */
export function quiet(queue: Queue): Queue {
  queue.on('error', () => {});
  return queue;
}

/** Producers' and workers' handle on a cascade's queues. */
export class CascadeQueues {
  private readonly stageQueues = new Map<string, Queue[]>();
  readonly merge: Queue;
  readonly listing: Queue;

  /**
   * `shards`: the process's configured BullMQ queues per stage (queue/queue-shards.ts), the layout
   * its workers consume; a run's own jobs go by the count stored in its spec (`runQueueShards`).
   */
  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
    readonly shards = 1,
  ) {
    this.merge = quiet(new Queue(MERGE_QUEUE, { connection, prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } }));
    this.listing = quiet(new Queue(LISTING_QUEUE, { connection, prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } }));
  }

  /** Every shard queue of the stage called `name` under a layout of `shards` queues per stage (one unless sharded). */
  stageShards(name: string, shards = this.shards): Queue[] {
    const key = `${shards}/${name}`;
    let queues = this.stageQueues.get(key);
    if (!queues) {
      queues = Array.from({ length: shards }, (_, k) => {
        const place = stageQueuePlace(this.prefix, name, k, shards);
        return quiet(new Queue(place.name, { connection: this.connection, prefix: place.prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } }));
      });
      this.stageQueues.set(key, queues);
    }
    return queues;
  }

  /** The queue that takes batch `batch`'s jobs for the stage called `name` (its shard of `shards`). */
  stage(name: string, batch = 0, shards = this.shards): Queue {
    return this.stageShards(name, shards)[shardOfBatch(batch, shards)]!;
  }

  /**
   * Add stage jobs with deterministic ids, each to its batch's shard of the run's `shards`;
   * BullMQ ignores ids it already holds.
   */
  async addStageJobs(stageName: string, jobs: StageJob[], shards = this.shards): Promise<void> {
    const byShard = new Map<number, StageJob[]>();
    for (const job of jobs) {
      const k = shardOfBatch(job.batch, shards);
      byShard.set(k, [...(byShard.get(k) ?? []), job]);
    }
    const queues = this.stageShards(stageName, shards);
    await Promise.all(
      [...byShard].map(([k, shard]) => queues[k]!.addBulk(shard.map((data) => ({ name: 'batch', data, opts: { ...JOB_OPTIONS, jobId: laneJobId(data) } })))),
    );
  }

  /** Queue the run's merge; safe to call more than once (one job id per run). */
  async queueMerge(runId: string, tracker: RunTracker): Promise<void> {
    await this.merge.add(
      'merge',
      { runId },
      { jobId: mergeJobId(runId), attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: false, removeOnFail: false },
    );
    await tracker.markMergeQueued(runId);
  }

  /**
   * Queue the run's listing job, which lists the rest of its source as batches finish; safe to
   * call more than once (one job id per run). It leaves no trace once done or failed, so a
   * resubmission after a failed listing can queue it again.
   */
  async queueListing(runId: string): Promise<void> {
    await this.listing.add(
      'list',
      { runId },
      { jobId: listingJobId(runId), attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true, removeOnFail: true },
    );
  }

  /**
   * Move a run's jobs that failed for good (every attempt used) back to waiting with a fresh
   * retry budget (so a model error is retried before it becomes error rows), on the given
   * stage queues and the merge queue; returns how many per queue. Used once the cause (storage
   * down for longer than the retries, a bad deploy) is fixed, so the run can still complete.
   * `shards`: the run's layout (its spec's).
   */
  async retryFailed(runId: string, stageNames: readonly string[], shards = this.shards): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const [name, queue] of [...stageNames.flatMap((n) => this.stageShards(n, shards).map((q) => [n, q] as const)), ['merge', this.merge] as const]) {
      counts[name] ??= 0;
      // Pages of 500: a run's failed set can be large, and getFailed(0, -1) loads it all at once.
      // Retried jobs leave the failed set, so only a page holding none of this run's moves on.
      let start = 0;
      for (;;) {
        const jobs = await queue.getFailed(start, start + 499);
        if (jobs.length === 0) break;
        const mine = jobs.filter((j) => (j?.data as { runId?: unknown } | undefined)?.runId === runId);
        for (const job of mine) await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        counts[name] += mine.length;
        if (mine.length === 0) start += 500;
      }
    }
    return counts;
  }

  /** Close the queue handles (not the shared connection). */
  async close(): Promise<void> {
    await Promise.all([this.merge.close(), this.listing.close(), ...[...this.stageQueues.values()].flat().map((q) => q.close())]);
  }
}
