/**
 * `cascade retry <runId>`: put a run's jobs that failed for good back in their queues, once
 * their cause is fixed (e.g. the output bucket was unreachable for longer than the retries).
 * Parts are idempotent and counted once, so retrying never duplicates a row. The listing job of a
 * listed run stops writing its manifest shards while a job has failed for good; retrying queues
 * it again, so the shards left are written while the run labels, not all by its merge.
 */
import { shardsLeftToWriteLive } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { RunId } from '../../queue/jobs.js';
import { runQueueShards } from '../../queue/queue-shards.js';
import { connectRedisChecked } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { fleetSettings } from '../fleet-settings.js';

/** Retry the failed jobs of `runId`; resolves with the count per queue. */
export async function retryCommand(runId: string, o: { config?: string; prefix?: string; json?: boolean }): Promise<Record<string, number>> {
  const id = RunId.parse(runId);
  const { redisUrl, prefix, shards } = await fleetSettings(o);
  const redis = await connectRedisChecked(redisUrl);
  const queues = new CascadeQueues(redis, prefix, shards);
  try {
    const tracker = new RunTracker(redis, prefix);
    const spec = await tracker.spec(id);
    if (!spec) throw Object.assign(new Error(`run ${id} is unknown to this Redis (prefix ${prefix})`), { name: 'UnknownRunError' });
    // Cleared first: a retried job that fails for good again is noted again.
    await tracker.clearJobFailures(id);
    const counts = await queues.retryFailed(
      id,
      spec.stages.map((s) => s.name),
      runQueueShards(spec),
    );
    const listing = await tracker.listingState(id);
    if (listing?.listed && (await shardsLeftToWriteLive(tracker, spec, listing.batches))) await queues.queueListing(id);
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    process.stdout.write(
      o.json
        ? `${JSON.stringify({ runId: id, retried: counts })}\n`
        : `run ${id}: ${total} failed job(s) back in their queues (${Object.entries(counts)
            .map(([q, n]) => `${q} ${n}`)
            .join(', ')})\n`,
    );
    return counts;
  } finally {
    await queues.close();
    redis.disconnect();
  }
}
