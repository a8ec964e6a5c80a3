/**
 * `cascade status [runId]`: progress of one run per stage (or the views of recent runs) from the
 * run tracker's counters and the run's jobs in the stage queues; `--watch` redraws until the
 * run finishes, `--json` prints RunStatus (one run) or RunView objects (the list) for scripts,
 * `--fail-on-errors` exits 1 when a shown run failed or is done with errors.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import { CascadeError, EXIT_FAILED } from '../../config/errors.js';
import { RunSummary } from '../../pipeline/results/manifest.js';
import { SUMMARY_KEY } from '../../pipeline/results/output-layout.js';
import type { ReviewReport } from '../../pipeline/reviews/review-summary.js';
import { withEnvStores } from '../run-output.js';
import { isObjectNotFound, readJson } from '../../pipeline/storage/object-store.js';
import { connectRedisChecked } from '../../queue/redis-connection.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { runQueueShards, shardMismatch } from '../../queue/queue-shards.js';
import { describeListing } from '../../producers/describe-listing.js';
import { readRecentRunViews } from '../../queue/read-run-views.js';
import { RunTracker } from '../../queue/run-tracker.js';
import type { RunView } from '../../queue/run-view.js';
import { describeRunFailure, stuckRunFailures } from '../../queue/wait-for-run.js';
import { failOnDrift } from '../fail-on-drift.js';
import { failOnErrors } from '../fail-on-errors.js';
import { fleetSettings } from '../fleet-settings.js';
import { buildRunStatus, formatRunList, formatRunStatus, type BatchCounts, type RunStatus } from '../format-status.js';

/** The run id names no run under this prefix. */
export class UnknownRunError extends CascadeError {
  override name = 'UnknownRunError';
}

export interface StatusCommandOptions {
  config?: string;
  prefix?: string;
  json?: boolean;
  watch?: boolean;
  /** Seconds between redraws with --watch. */
  interval?: number;
  /** Runs listed without a run id. */
  limit?: number;
  /** Exit 1 (one line) when the run is done and its audit says DRIFT. */
  failOnDrift?: boolean;
  /** Exit 1 (one line) when a shown run failed or is done with errors (with --watch: once the run has finished). */
  failOnErrors?: boolean;
}

/** Batches of `runId` in `queue` that are queued, active and failed (job ids are `<runId>-b<n>-…`). */
export async function runBatchCounts(queue: Queue, runId: string): Promise<BatchCounts> {
  // Run ids are [A-Za-z0-9_-] only, so they need no escaping; '-b<n>-' stops 'a' matching run 'a-b5'.
  const ofRun = new RegExp(`^${runId}-b\\d+-`);
  const ids = async (...types: Array<'waiting' | 'delayed' | 'prioritized' | 'active' | 'failed'>) =>
    (await queue.getRanges(types, 0, -1)).filter((id) => ofRun.test(id));
  const [queued, active, failed] = await Promise.all([ids('waiting', 'delayed', 'prioritized'), ids('active'), ids('failed')]);
  // One failure's reason tells an operator what to fix before `cascade retry` (a refused model, an unwritable output).
  const reason = failed.length > 0 ? ((await queue.getJob(failed[0]!))?.failedReason ?? null) : null;
  return { queued: queued.length, active: active.length, failed: failed.length, ...(reason ? { failedReason: reason } : {}) };
}

/** The counts of a stage's shard queues together (the first failure's reason). */
function sumBatchCounts(shards: BatchCounts[]): BatchCounts {
  const reason = shards.find((c) => c.failedReason)?.failedReason;
  return {
    queued: shards.reduce((n, c) => n + c.queued, 0),
    active: shards.reduce((n, c) => n + c.active, 0),
    failed: shards.reduce((n, c) => n + c.failed, 0),
    ...(reason ? { failedReason: reason } : {}),
  };
}

/** One `QUEUE LAYOUT:` line per unmerged run queued on another layout than `shards` (empty when none). */
function layoutWarnings(runs: readonly RunView[], shards: number): string {
  return runs
    .filter((r) => !r.mergedAt)
    .map((r) => shardMismatch(r, shards))
    .filter((m) => m !== null)
    .map((m) => `QUEUE LAYOUT: ${m}\n`)
    .join('');
}

/**
 * Read the status of one run, or null when Redis does not know it: its batches on its own queue
 * layout, and, while it is unfinished, a mismatch with `queues`' configured layout.
 */
export async function readRunStatus(tracker: RunTracker, queues: CascadeQueues, runId: string, now = new Date()): Promise<RunStatus | null> {
  const progress = await tracker.progress(runId);
  if (!progress) return null;
  const shards = runQueueShards(progress.spec);
  const batches = await Promise.all(
    progress.spec.stages.map(async (s) => sumBatchCounts(await Promise.all(queues.stageShards(s.name, shards).map((q) => runBatchCounts(q, runId))))),
  );
  const status = buildRunStatus(progress, batches, now);
  const mismatch = progress.mergedAt ? null : shardMismatch(progress.spec, queues.shards);
  return mismatch ? { ...status, queueMismatch: mismatch } : status;
}

/**
 * The reviews report in a finished run's summary.json (none when it has none), or why it could
 * not be read: status goes on without it, since Redis answered.
 */
export async function readRunReviews(out: string): Promise<{ reviews?: ReviewReport; reviewsUnread?: string }> {
  return withEnvStores(async (stores) => {
    const store = stores.open(out);
    try {
      const { reviews } = await readJson(store, SUMMARY_KEY, RunSummary);
      return reviews ? { reviews } : {};
    } catch (err) {
      return isObjectNotFound(err) ? {} : { reviewsUnread: (err as Error).message };
    }
  });
}

/** Print the status of `runId` (or the recent runs); with `watch`, redraw until the run is done or failed. */
export async function statusCommand(
  runId: string | undefined,
  o: StatusCommandOptions,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<RunStatus | RunView[]> {
  const { redisUrl, prefix, shards } = await fleetSettings(o);
  const redis = await connectRedisChecked(redisUrl, { maxRetriesPerRequest: 2 });
  const tracker = new RunTracker(redis, prefix);
  const queues = new CascadeQueues(redis, prefix, shards);
  const clear = o.watch && process.stdout.isTTY ? '\x1b[2J\x1b[H' : '';
  // Seen stuck on two polls in a row: a batch between its stages is not.
  let stuckPolls = 0;
  try {
    for (;;) {
      if (runId === undefined) {
        const runs = await readRecentRunViews(tracker, o.limit ?? 20, new Date(), describeListing);
        const layout = layoutWarnings(runs, shards);
        write(o.json ? `${JSON.stringify(runs)}\n` : `${clear}${formatRunList(runs)}\n${layout}`);
        if (o.failOnErrors) failOnErrors(runs);
        if (!o.watch) return runs;
      } else {
        const status = await readRunStatus(tracker, queues, runId);
        if (!status) throw new UnknownRunError(`run ${runId} is unknown to prefix ${prefix} on this Redis (\`cascade status\` lists the runs it knows)`);
        const merged = status.state === 'done' || status.state === 'done-with-errors';
        if (merged) Object.assign(status, await readRunReviews(status.out));
        write(o.json ? `${JSON.stringify(status)}\n` : `${clear}${formatRunStatus(status)}\n`);
        if (merged && o.failOnDrift) failOnDrift(runId, status.audit);
        // Only finished runs are failed or done-with-errors, so this waits for the end under --watch.
        if (o.failOnErrors) failOnErrors([status]);
        if (!o.watch || merged) return status;
        // Watching a run that cannot complete ends with exit 1: its merge failed, or batches
        // failed for good and nothing of the run is left to run (the status above says which).
        if (status.state === 'failed') {
          process.exitCode = EXIT_FAILED;
          return status;
        }
        const stuck = await stuckRunFailures(
          queues,
          runId,
          status.stages.map((s) => s.name),
          status.queueShards,
        );
        stuckPolls = stuck ? stuckPolls + 1 : 0;
        if (stuck && stuckPolls >= 2) {
          process.stderr.write(`cascade: ${describeRunFailure(runId, stuck)}\n`);
          process.exitCode = EXIT_FAILED;
          return status;
        }
      }
      await sleep((o.interval ?? 1) * 1000);
    }
  } finally {
    await queues.close();
    redis.disconnect();
  }
}
