/**
 * The queues of one cascade (a stage queue per model, plus the merge queue) and the two
 * ways jobs enter them: stage batches and the once-per-run merge.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { EVENTS_MAX_LEN, JOB_OPTIONS, MERGE_QUEUE, laneJobId, mergeJobId, stageQueueName, type StageJob } from './jobs.js';
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
  private readonly stageQueues = new Map<string, Queue>();
  readonly merge: Queue;

  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
  ) {
    this.merge = quiet(new Queue(MERGE_QUEUE, { connection, prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } }));
  }

  /** The queue that feeds the stage called `name`. */
  stage(name: string): Queue {
    let queue = this.stageQueues.get(name);
    if (!queue) {
      queue = quiet(new Queue(stageQueueName(name), { connection: this.connection, prefix: this.prefix, streams: { events: { maxLen: EVENTS_MAX_LEN } } }));
      this.stageQueues.set(name, queue);
    }
    return queue;
  }

  /** Add stage jobs with deterministic ids; BullMQ ignores ids it already holds. */
  async addStageJobs(stageName: string, jobs: StageJob[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.stage(stageName).addBulk(jobs.map((data) => ({ name: 'batch', data, opts: { ...JOB_OPTIONS, jobId: laneJobId(data) } })));
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
   * Move a run's jobs that failed for good (every attempt used) back to waiting with a fresh
   * retry budget (so a model error is retried before it becomes error rows), on the given
   * stage queues and the merge queue; returns how many per queue. Used once the cause (storage
   * down for longer than the retries, a bad deploy) is fixed, so the run can still complete.
   */
  async retryFailed(runId: string, stageNames: readonly string[]): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const [name, queue] of [...stageNames.map((n) => [n, this.stage(n)] as const), ['merge', this.merge] as const]) {
      counts[name] = 0;
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
    await Promise.all([this.merge.close(), ...[...this.stageQueues.values()].map((q) => q.close())]);
  }
}
