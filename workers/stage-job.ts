/**
 * One stage job (a batch of one run at one stage, ordinary or warm-up lane): resolve the stage's
 * routing, then produce the batch's part — replayed if already counted, handed on unread, or
 * classified — and hand the batch on: forward the unsure images, count the part once, and queue
 * what the count makes due (the decision, the audits, the merge).
 */
import type { Job } from 'bullmq';
import { skipBatch, type StageResult } from '../pipeline/classify-batch.js';
import type { AuditItem } from '../pipeline/audit/audit-part.js';
import type { PartCost } from '../pipeline/cost/run-cost.js';
import { ResultPart, type StageStats } from '../pipeline/results/manifest.js';
import { partKey, warmupPartKey } from '../pipeline/results/output-layout.js';
import { resolveRouting, type StageRouting } from '../pipeline/routing-resolver.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { partId as stagePartId, StageJob, warmupPartId } from '../queue/jobs.js';
import { queueDecision, readRouting } from '../queue/threshold-decision.js';
import { queueAudit, selectAudits } from './audit-job.js';
import { type BatchAt, type ClassifyContext, classifyPart } from './classify-part.js';
import { putPart } from './put-part.js';
import { runQueueShards } from '../queue/queue-shards.js';

/** What a stage job needs of its stage worker. */
export interface StageJobContext extends ClassifyContext {
  prefix: string;
  /** The stage this worker serves, by name. */
  stage: string;
  openOutput: (out: string) => ObjectStore;
  queues: CascadeQueues;
  /** Called after each batch is counted (metrics); errorsByKind counts the batch's error rows. */
  onBatch?: (stage: string, stats: StageStats, errorsByKind: Record<string, number>, cost?: PartCost) => void;
}

/** A batch's part as this job produced it. */
interface Produced {
  result: StageResult;
  /** What classifying the batch cost (a replayed part's own figure; none for a part that classified nothing). */
  cost?: PartCost;
  audits: AuditItem[];
  /** The part was counted before (the job died after counting): nothing was classified now. */
  replay: boolean;
}

/** Process one stage job; returns the batch's counts at this stage. */
export async function processStageJob(job: Job, ctx: StageJobContext): Promise<{ accepted: number; forwarded: number; errors: number }> {
  const data = StageJob.parse(job.data);
  const warmupLane = data.lane === 'warmup';
  const id = warmupLane ? warmupPartId(data.batch, data.stage) : stagePartId(data.batch, data.stage);
  // The spec and whether this part was counted already: one round trip to Redis per job.
  const { spec, partDone } = await ctx.tracker.jobContext(data.runId, id);
  if (!spec) throw new Error(`run ${data.runId} is unknown to this Redis (prefix ${ctx.prefix})`);
  const stage = spec.stages[data.stage];
  if (!stage || stage.name !== ctx.stage) throw new Error(`job for stage ${data.stage} (${stage?.name}) reached the ${ctx.stage} worker`);
  if (warmupLane && !spec.selfCalibration) throw new Error(`warm-up job of run ${data.runId}, which is not self-calibrating`);
  // The warm-up lane answers every image at every stage; its first stage then forwards them all.
  const routing = warmupLane ? resolveRouting(spec, data.stage, null, 'warmup') : await readRouting(ctx.tracker, spec, data.stage);
  // Warm-up images of a batch are labelled in their own lane, never here as well.
  const items = warmupLane ? data.items : data.items.filter((i) => !i.warmup);
  const b: BatchAt = {
    spec,
    data,
    items,
    skipped: data.items.length - items.length,
    warmupLane,
    store: ctx.openOutput(spec.out),
    key: warmupLane ? warmupPartKey(data.batch, data.stage) : partKey(data.batch, data.stage),
  };
  const produced = await producePart(job, b, partDone, routing, ctx);
  return handOn(b, id, produced, ctx);
}

/** The batch's part: the counted one on a replay, else one handed on unread or classified now. */
async function producePart(job: Job, b: BatchAt, partDone: boolean, routing: StageRouting, ctx: StageJobContext): Promise<Produced> {
  // A retry of a batch whose part was already counted (the job died after counting) reuses that
  // part: classifying again could give other rows (a model failing now that worked then) that
  // contradict the counters and the images already forwarded.
  const counted = partDone ? await readCountedPart(b.store, b.key, b.items) : null;
  if (counted) {
    const audits = b.data.stage === 0 && !b.warmupLane ? selectAudits(b.spec, counted.rows, b.items) : [];
    return { result: counted, cost: counted.cost, audits, replay: true };
  }
  // Nothing to classify: the run decided the cascade does not pay (this stage hands the batch on
  // unread), or the batch holds warm-up images only (its part records them, so the merge reads their lane).
  if (routing.bigOnly || b.items.length === 0) return { result: await handOnUnread(b, ctx), audits: [], replay: false };
  return { ...(await classifyPart(job, b, routing, ctx)), replay: false };
}

/** Write the part of a batch this stage does not classify: every item forwarded, none read. */
async function handOnUnread(b: BatchAt, ctx: StageJobContext): Promise<StageResult> {
  const result = skipBatch(b.items);
  const part: ResultPart = {
    runId: b.data.runId,
    batch: b.data.batch,
    stage: b.data.stage,
    stageName: b.spec.stages[b.data.stage]!.name,
    rows: [],
    stats: result.stats,
    ...(b.items.length ? { skipped: b.items.length } : {}),
    ...(b.skipped ? { warmup: b.skipped } : {}),
  };
  await putPart(b.store, b.key, part, ctx.tracker);
  return result;
}

/** Forward the batch's unsure images, count its part once, and queue what the count makes due. */
async function handOn(b: BatchAt, id: string, p: Produced, ctx: StageJobContext): Promise<{ accepted: number; forwarded: number; errors: number }> {
  const { spec, data, warmupLane } = b;
  const { result, cost, audits } = p;
  const next = spec.stages[data.stage + 1];
  if (result.forward.length > 0) {
    if (!next) throw new Error(`stage ${spec.stages[data.stage]!.name} forwarded images but is the last stage`);
    const forward = result.forward.map(({ ref, pos, at }) => ({ ref, pos, ...(at ? { at } : {}) }));
    await ctx.queues.addStageJobs(
      next.name,
      [{ runId: data.runId, batch: data.batch, stage: data.stage + 1, items: forward, ...(warmupLane ? { lane: 'warmup' as const } : {}) }],
      runQueueShards(spec),
    );
  }
  const { images, accepted, forwarded, errors } = result.stats;
  const errorsByKind = countErrorKinds(result.rows);
  const mustMerge = await ctx.tracker.finishPart(data.runId, {
    id,
    stage: data.stage,
    final: result.rows.length,
    counts: { images, accepted, forwarded, errors },
    audits: audits.length,
    ...(cost ? { cost } : {}),
    errorsByKind,
    ...(warmupLane ? { lane: 'warmup' as const } : spec.selfCalibration && data.stage === 0 ? { lane: 'first' as const } : {}),
  });
  // The last warm-up row completes the warm-up: the run's threshold can be decided.
  if (warmupLane && (await ctx.tracker.needsDecision(data.runId))) await queueDecision(ctx.queues, spec);
  // Queued only after the part promised its audits to the tracker, so an audit can never be
  // counted without its promise (which would let the run complete early).
  await queueAudit(ctx.queues, spec, data.batch, audits);
  if (mustMerge) await ctx.queues.queueMerge(data.runId, ctx.tracker);
  // A replay processed no images: metrics already counted them.
  if (ctx.onBatch && !p.replay) ctx.onBatch(ctx.stage, result.stats, errorsByKind, cost);
  return { accepted, forwarded, errors };
}

/** The part a counted batch wrote at `key`, as a stage result (forwarded = the job's `items` without a row); null if absent. */
async function readCountedPart(store: ObjectStore, key: string, items: StageJob['items']): Promise<(StageResult & { cost?: PartCost }) | null> {
  let part: ResultPart;
  try {
    part = await readJson(store, key, ResultPart);
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
  const answered = new Set(part.rows.map((r) => r.pos));
  return {
    rows: part.rows,
    forward: items.filter((i) => !answered.has(i.pos)),
    forwardedConfidence: part.forwardedConfidence ?? [],
    decoded: part.cost?.decoded ?? 0,
    stats: part.stats,
    ...(part.cost ? { cost: part.cost } : {}),
  };
}

/** Error rows of a batch by kind. */
function countErrorKinds(rows: ReadonlyArray<{ error: { kind: string } | null }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) if (row.error) counts[row.error.kind] = (counts[row.error.kind] ?? 0) + 1;
  return counts;
}
