/**
 * The threshold decision of a self-calibrating run, on BullMQ: once every warm-up image has its
 * final row, one `decide` job (fixed id, on the first stage's queue) certifies the target on the
 * warm-up (pipeline/certify-warmup.ts), stores the decision once (HSETNX: the first decision wins, a
 * second decider reads it back), and only then releases the first stage's ordinary jobs, which
 * were held in Redis since the listing. So no worker ever routes an ordinary image without the
 * stored threshold; a crash anywhere is healed by the job's retry (storing and releasing are
 * idempotent: job ids are fixed and counted parts are skipped).
 */
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import { certifyWarmup } from '../pipeline/certify-warmup.js';
import { needsDecision, routable, type RoutedRun, type StageRouting } from '../pipeline/routing-resolver.js';
import { refusalLine, ThresholdDecision } from '../pipeline/self-calibration.js';
import type { CascadeQueues } from './cascade-queues.js';
import { DECIDE_JOB_NAME, type DecideJob, JOB_OPTIONS, partId, type RunSpec, StageJob, decideJobId } from './jobs.js';
import type { RunTracker } from './run-tracker.js';
import { runQueueShards } from './queue-shards.js';

/** What a decision needs: the run's state, its queues, its output location and a log. */
export interface DecisionContext {
  tracker: RunTracker;
  queues: CascadeQueues;
  openOutput: (out: string) => ObjectStore;
  log: (msg: string, fields?: { level?: 'debug' | 'info' | 'warn' | 'error'; [field: string]: unknown }) => void;
}

/** Queue a run's decision (fixed id: queued twice, it runs once; run again, it finds the work done). */
export async function queueDecision(queues: CascadeQueues, spec: RunSpec): Promise<void> {
  const data: DecideJob = { runId: spec.runId };
  await queues.stage(spec.stages[0]!.name, 0, runQueueShards(spec)).add(DECIDE_JOB_NAME, data, { ...JOB_OPTIONS, jobId: decideJobId(spec.runId) });
}

/** The stored decision of a run, parsed; null before it is made. */
export async function storedDecision(tracker: RunTracker, runId: string): Promise<ThresholdDecision | null> {
  const raw = await tracker.decision(runId);
  return raw ? ThresholdDecision.parse(JSON.parse(raw)) : null;
}

/**
 * Decide a run's threshold from its warm-up and release its held jobs, unless already done.
 * Returns the stored decision (null when the warm-up is not complete yet).
 */
export async function runDecision(runId: string, ctx: DecisionContext): Promise<ThresholdDecision | null> {
  const spec = await ctx.tracker.spec(runId);
  if (!spec) throw new Error(`run ${runId} is unknown to this Redis`);
  const settings = spec.selfCalibration;
  if (!settings) throw new Error(`run ${runId} is not self-calibrating: it has no threshold to decide`);
  if (!(await ctx.tracker.needsDecision(runId))) return storedDecision(ctx.tracker, runId);

  let decision = await storedDecision(ctx.tracker, runId);
  if (!decision) {
    const certified = await certifyWarmup(ctx.openOutput(spec.out), await ctx.tracker.warmupBatches(runId), { ...spec, selfCalibration: settings }, new Date());
    const mine = JSON.stringify(certified);
    const { stored, won } = await ctx.tracker.decide(runId, mine);
    decision = ThresholdDecision.parse(JSON.parse(stored));
    // Only the decider whose HSETNX stored the decision says so: the log has one decision per run
    // (comparing the JSON would not do: two deciders in the same millisecond write equal strings).
    if (won) logDecision(ctx, spec, decision);
  }
  await releaseHeld(ctx, spec);
  return decision;
}

function logDecision(ctx: DecisionContext, spec: RunSpec, d: ThresholdDecision): void {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const fields = { runId: spec.runId, certified: d.certified, warmupSample: d.sample };
  if (d.route === 'big-only') {
    ctx.log(`run ${spec.runId}: the rest of the run goes straight to ${spec.stages[spec.stages.length - 1]!.name}: ${d.routeReason}`, {
      ...fields,
      route: d.route,
      level: 'warn',
    });
  }
  if (d.certified) {
    ctx.log(
      `run ${spec.runId}: threshold decided from the warm-up: ${spec.metric} ≥ ${d.threshold} keeps ${pct(d.fractionAccepted)} of ${d.sample} warm-up images, ` +
        `agreement ${pct(d.empiricalAgreement)} there; with probability ≥ ${1 - d.delta}, agreement on new accepted images ≥ ${pct(d.bound)} (target ${pct(d.target)})`,
      { ...fields, threshold: d.threshold, bound: d.bound },
    );
  } else {
    ctx.log(`run ${spec.runId}: SELF-CALIBRATION REFUSED: ${refusalLine(d)}`, { ...fields, level: 'warn' });
  }
}

/**
 * How stage `stage` of `spec` routes the images it scores (pipeline/routing-resolver.ts), the run's
 * decision read from Redis when the routing depends on it. Fails when that decision is not stored
 * (or lacks its rank reference) rather than route without it.
 */
export async function readRouting(tracker: RunTracker, spec: RoutedRun, stage: number): Promise<StageRouting> {
  return routable(spec, stage, needsDecision(spec, stage) ? await storedDecision(tracker, spec.runId) : null);
}

/** Queue the held first-stage jobs (skipping batches already counted), then mark the run released. */
async function releaseHeld(ctx: DecisionContext, spec: RunSpec): Promise<void> {
  const first = spec.stages[0]!.name;
  for await (const page of ctx.tracker.heldJobs(spec.runId)) {
    const jobs = page.map((raw) => StageJob.parse(JSON.parse(raw)));
    const done = await Promise.all(jobs.map((j) => ctx.tracker.isPartDone(j.runId, partId(j.batch, 0))));
    await ctx.queues.addStageJobs(
      first,
      jobs.filter((_, i) => !done[i]),
      runQueueShards(spec),
    );
  }
  await ctx.tracker.markReleased(spec.runId);
}
