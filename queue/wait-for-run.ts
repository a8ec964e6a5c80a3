/**
 * Waiting for a run to finish: polls the run's Redis state and reports progress, so the
 * one-process `cascade run` and `cascade status` share one notion of "done".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import { CascadeFailure } from '../config/errors.js';
import { RunSummary } from '../pipeline/results/manifest.js';
import type { CascadeQueues } from './cascade-queues.js';
import { runQueueShards } from './queue-shards.js';
import type { RunProgress, RunTracker } from './run-tracker.js';

/** A batch (or the merge) that failed for good: its job id, stage and last error. */
export interface FailedBatch {
  stage: string;
  jobId: string;
  reason: string;
}

/**
 * What a failed run's message tells its user to do once the cause is fixed: `cascade retry`
 * re-queues its failed jobs on a shared Redis; a private one (`cascade run` without REDIS_URL) is
 * gone with the process, so only running the same command again can work.
 */
export type RetryHint = 'cascade-retry' | 'rerun';

/** The run cannot complete: batches failed for good, or its merge did. Exit code 1. */
export class RunFailedError extends CascadeFailure {
  override name = 'RunFailedError';
  constructor(
    readonly runId: string,
    readonly failed: readonly FailedBatch[],
    readonly mergeError?: string,
    hint: RetryHint = 'cascade-retry',
  ) {
    super(describeRunFailure(runId, failed, mergeError, hint));
  }
}

/** The first word-ish part of an error, so "ENOTDIR: … parts/3.jsonl" and "ENOTDIR: … parts/4.jsonl" are one kind. */
function reasonKind(reason: string): string {
  const m = /^([A-Za-z][\w.]*)(?=[:\s])/.exec(reason);
  return m ? m[1]! : reason.slice(0, 60);
}

/** Which batches failed, the first error of each kind, and what to do once the cause is fixed (see RetryHint). */
export function describeRunFailure(runId: string, failed: readonly FailedBatch[], mergeError?: string, hint: RetryHint = 'cascade-retry'): string {
  const lines = [
    mergeError
      ? `run ${runId} failed: its merge failed for good: ${mergeError}`
      : `run ${runId} failed: ${failed.length} batch(es) failed for good after their retries`,
  ];
  if (failed.length > 0) {
    const shown = failed.slice(0, 10).map((f) => `${f.stage}:${f.jobId}`);
    lines.push(`  failed: ${shown.join(', ')}${failed.length > shown.length ? `, … (${failed.length - shown.length} more)` : ''}`);
    const kinds = new Map<string, FailedBatch>();
    for (const f of failed) if (!kinds.has(reasonKind(f.reason))) kinds.set(reasonKind(f.reason), f);
    for (const f of kinds.values()) lines.push(`  first error (${f.jobId}): ${f.reason.split('\n')[0]}`);
  }
  lines.push(
    hint === 'rerun'
      ? '  once the cause is fixed, run the same command again (its private Redis is gone with this process, so `cascade retry` cannot resume it)'
      : `  once the cause is fixed: cascade retry ${runId}`,
  );
  return lines.join('\n');
}

/** The run's job ids (`<runId>-b<n>-…`, its merge or its threshold decision) in `types` of `queue`. */
async function runJobIds(queue: Queue, runId: string, types: Array<'waiting' | 'delayed' | 'prioritized' | 'active' | 'failed' | 'waiting-children'>) {
  // Run ids are [A-Za-z0-9_-] only, so they need no escaping; '-b<n>-' stops 'a' matching run 'a-b5'.
  // A self-calibrating run's threshold decision (`<runId>-decide`) holds its ordinary batches back: it counts too.
  const ofRun = new RegExp(`^${runId}-(b\\d+-|merge$|decide$)`);
  return (await queue.getRanges(types, 0, -1)).filter((id) => ofRun.test(id));
}

/**
 * The batches of `runId` that failed for good, when nothing of the run is left queued, delayed
 * or active (so the run can no longer complete); null while the run can still make progress.
 * `shards`: the run's queue layout (its spec's; undefined: the queues' configured one).
 */
export async function stuckRunFailures(
  queues: CascadeQueues,
  runId: string,
  stageNames: readonly string[],
  shards: number | undefined,
): Promise<FailedBatch[] | null> {
  const all = [...stageNames.flatMap((n) => queues.stageShards(n, shards).map((q) => [n, q] as const)), ['merge', queues.merge] as const];
  const failed: FailedBatch[] = [];
  for (const [stage, queue] of all) {
    const pending = await runJobIds(queue, runId, ['waiting', 'delayed', 'prioritized', 'active', 'waiting-children']);
    if (pending.length > 0) return null;
    for (const jobId of await runJobIds(queue, runId, ['failed'])) {
      const job = await queue.getJob(jobId);
      failed.push({ stage, jobId, reason: job?.failedReason ?? 'unknown error' });
    }
  }
  return failed.length > 0 ? failed : null;
}

/**
 * Poll until the run is merged; returns its summary. Throws RunFailedError when the merge failed
 * for good, or (given `queues`) when batches failed for good and nothing of the run is left to
 * run, so the caller ends instead of waiting forever; `hint` picks the message's last line.
 */
export async function waitForRun(
  tracker: RunTracker,
  runId: string,
  onProgress: (p: RunProgress) => void,
  intervalMs = 200,
  queues?: CascadeQueues,
  hint: RetryHint = 'cascade-retry',
): Promise<RunSummary> {
  // Seen stuck on two polls in a row: a batch between its stages or a merge being queued is not.
  let stuckPolls = 0;
  // The stuck check reads every queued job id of the run's queues; a run whose counters moved
  // since the last poll is not stuck, so only a still one pays for that read.
  let lastMoved = '';
  for (;;) {
    const progress = await tracker.progress(runId);
    if (!progress) throw new Error(`run ${runId} is unknown`);
    onProgress(progress);
    if (progress.mergeError) throw new RunFailedError(runId, [], progress.mergeError, hint);
    // Its listing failed (in whichever process listed it): it can never complete.
    if (progress.failedReason) throw new CascadeFailure(`run ${runId} failed: ${progress.failedReason}`);
    if (progress.mergedAt) {
      const raw = await tracker.summary(runId);
      return RunSummary.parse(JSON.parse(raw!));
    }
    const moved = progressMark(progress);
    const still = moved === lastMoved;
    lastMoved = moved;
    if (queues && !still) stuckPolls = 0;
    if (queues && still) {
      const failed = await stuckRunFailures(
        queues,
        runId,
        progress.spec.stages.map((s) => s.name),
        runQueueShards(progress.spec),
      );
      stuckPolls = failed ? stuckPolls + 1 : 0;
      if (failed && stuckPolls >= 2) throw new RunFailedError(runId, failed, undefined, hint);
    }
    await sleep(intervalMs);
  }
}

/** What changes whenever a run moves: listing, parts counted, audits recorded, merge queued. */
function progressMark(p: RunProgress): string {
  return JSON.stringify([p.listedImages, p.listed, p.final, p.stages, p.audit, p.completedAt, p.selfCalibration?.decision ?? null]);
}
