/**
 * Audit sampling on BullMQ: the first stage picks some of the images it accepted and queues
 * them on the last stage's queue as one job per batch; the last stage's worker labels them,
 * writes `audit/<batch>.json` and counts the audit once. Audits never touch the manifest.
 */
import type { Job } from 'bullmq';
import { auditEntries, countAgreement, type AuditItem, type AuditPart } from '../pipeline/audit/audit-part.js';
import { auditKey } from '../pipeline/results/output-layout.js';
import { isAudited } from '../pipeline/audit/audit-sample.js';
import { classifyBatch, errorRow } from '../pipeline/classify-batch.js';
import type { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import type { PartRow } from '../pipeline/results/manifest.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { AUDIT_JOB_NAME, AuditJob, JOB_OPTIONS, auditJobId, auditPartId, type RunSpec } from '../queue/jobs.js';
import type { ClassifyDeps } from '../pipeline/classify-batch.js';
import type { ModelLease } from '../pipeline/models/model-cache.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { readRouting } from '../queue/threshold-decision.js';
import { runQueueShards } from '../queue/queue-shards.js';

/** The first stage's accepted rows that the run's audit samples (none on runs without audits); `items` give sharded samples their place. */
export function selectAudits(spec: RunSpec, rows: PartRow[], items: ReadonlyArray<{ pos: number; at?: SampleLocator }> = []): AuditItem[] {
  const audit = spec.audit;
  if (!audit || audit.fraction <= 0) return [];
  const at = new Map(items.flatMap((i) => (i.at ? [[i.pos, i.at] as const] : [])));
  return rows
    .filter((r) => !r.error && r.label !== null && r.confidence !== null && isAudited(spec.runId, audit.seed, r.key, audit.fraction))
    .map((r) => ({
      ref: r.key,
      pos: r.pos,
      ...(at.has(r.pos) ? { at: at.get(r.pos)! } : {}),
      label: r.label!,
      labelName: r.labelName,
      confidence: r.confidence!,
    }));
}

/** Queue a batch's audit on the last stage (deterministic id, so repeats add nothing). */
export async function queueAudit(queues: CascadeQueues, spec: RunSpec, batch: number, items: AuditItem[]): Promise<void> {
  if (items.length === 0) return;
  const last = spec.stages[spec.stages.length - 1]!;
  const data: AuditJob = { runId: spec.runId, batch, items };
  await queues.stage(last.name, batch, runQueueShards(spec)).add(AUDIT_JOB_NAME, data, { ...JOB_OPTIONS, jobId: auditJobId(spec.runId, batch) });
}

/** What an audit job needs of the last stage's worker. */
export interface AuditContext {
  prefix: string;
  /** The stage this worker serves. */
  stage: string;
  /** Borrow the model a run pins for a stage, verified, with classify dependencies under the run's limits. */
  borrow(spec: RunSpec, index: number): Promise<{ lease: ModelLease; deps: ClassifyDeps }>;
  openOutput: (out: string) => ObjectStore;
  tracker: RunTracker;
  queues: CascadeQueues;
}

/** Label one audit job with the last stage's model, write its audit part and count it once. */
export async function processAuditJob(job: Job, o: AuditContext): Promise<{ accepted: number; forwarded: number; errors: number }> {
  const data = AuditJob.parse(job.data);
  const spec = await o.tracker.spec(data.runId);
  if (!spec) throw new Error(`run ${data.runId} is unknown to this Redis (prefix ${o.prefix})`);
  const last = spec.stages[spec.stages.length - 1]!;
  if (last.name !== o.stage) throw new Error(`audit job of run ${data.runId} reached the ${o.stage} worker, not the last stage ${last.name}`);

  let rows: PartRow[];
  // Read before the model: a missing reference fails the job, never becomes error rows.
  const { metric, rankReference } = await readRouting(o.tracker, spec, spec.stages.length - 1);
  const { lease, deps } = await o.borrow(spec, spec.stages.length - 1);
  try {
    // The last stage keeps every answer: an audit labels each image it is sent.
    rows = (await classifyBatch(data.items, lease.model, { threshold: null, metric, rankReference }, deps)).rows;
  } catch (err) {
    // As for stage jobs: retry a model failure, and on the last attempt record it so the run completes.
    if (job.attemptsMade + 1 < (job.opts.attempts ?? 1)) throw err;
    rows = data.items.map((item) => errorRow(item, 'inference', err));
  } finally {
    lease.release();
  }
  const part: AuditPart = { runId: data.runId, batch: data.batch, entries: auditEntries(data.items, spec.stages[0]!.name, rows) };
  await o.openOutput(spec.out).put(auditKey(data.batch), JSON.stringify(part));
  const { agreeing } = countAgreement(part.entries);
  const mustMerge = await o.tracker.finishAudit(data.runId, { id: auditPartId(data.batch), audited: part.entries.length, agreeing });
  if (mustMerge) await o.queues.queueMerge(data.runId, o.tracker);
  const errors = part.entries.filter((e) => e.error).length;
  return { accepted: part.entries.length - errors, forwarded: 0, errors };
}
