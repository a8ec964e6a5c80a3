/**
 * BullMQ job payloads and queue naming. A stage job carries a batch of image refs, never
 * one image; ids are deterministic so resubmitting or retrying never duplicates work.
 */
import { z } from 'zod';
import { ConfidenceMetric, Limits, Numerics } from '../config/schema.js';
import { ModelPin } from '../pipeline/models/model-pin.js';

/** Ids become Redis keys and BullMQ job ids: keep them to a safe alphabet (no ':'). */
export const RunId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'run ids use letters, digits, _ and - (at most 64)');

/** What every worker needs to know about a run; stored once in Redis at submission. */
export const RunSpec = z.object({
  runId: RunId,
  source: z.string(),
  out: z.string(),
  metric: ConfidenceMetric,
  batchSize: z.number().int().positive(),
  /** Stage 0 is the little model, the last stage the big one. */
  stages: z
    .array(
      z.object({
        name: z.string(),
        /** The model every worker of this stage must use for this run, by content. */
        model: ModelPin,
        gmacsPerImage: z.number().nonnegative(),
        /** null on the last stage. */
        threshold: z.number().min(0).max(1).nullable(),
      }),
    )
    .min(2),
  /** Int8 kernel choice on the CPU provider; part of the run because it changes answers. */
  numerics: Numerics,
  /** Image limits; part of the run because an image over them becomes an error row. */
  limits: Limits,
  /** Largest probe difference a worker may show and still label this run. */
  probeTolerance: z.number().min(0),
  /** Audit sampling of first-stage accepted images (absent on runs without audits). */
  audit: z.object({ fraction: z.number().min(0).max(1), seed: z.string(), expectAgreement: z.number().min(0).max(1).optional() }).optional(),
  createdAt: z.string(),
});
export type RunSpec = z.infer<typeof RunSpec>;

/** One batch of images for one stage. `pos` is each image's position in its original batch. */
export const StageJob = z.object({
  runId: RunId,
  batch: z.number().int().nonnegative(),
  stage: z.number().int().nonnegative(),
  items: z.array(z.object({ ref: z.string(), pos: z.number().int().nonnegative() })).min(1),
});
export type StageJob = z.infer<typeof StageJob>;

/**
 * Images the first stage accepted that the last stage must also label, with the first stage's
 * answer; it runs on the last stage's queue as a job named AUDIT_JOB_NAME.
 */
export const AuditJob = z.object({
  runId: RunId,
  batch: z.number().int().nonnegative(),
  items: z
    .array(
      z.object({ ref: z.string(), pos: z.number().int().nonnegative(), label: z.number().int(), labelName: z.string().nullable(), confidence: z.number() }),
    )
    .min(1),
});
export type AuditJob = z.infer<typeof AuditJob>;

/** BullMQ job name that marks an audit job on a stage queue (stage batches are named 'batch'). */
export const AUDIT_JOB_NAME = 'audit';

/** Deterministic BullMQ job id of a batch's audit job. */
export function auditJobId(runId: string, batch: number): string {
  return `${runId}-b${batch}-audit`;
}

/**
 * Id of a batch's audit part in the run tracker's set of counted parts (`b<batch>audit`): the
 * last stage counts an audit part once by this id, into the audit counters, never the final rows.
 */
export function auditPartId(batch: number): string {
  return `b${batch}audit`;
}

export const MergeJob = z.object({ runId: RunId });
export type MergeJob = z.infer<typeof MergeJob>;

/** Queue of stage `name` (e.g. cascade-little). */
export function stageQueueName(name: string): string {
  return `stage-${name}`;
}

export const MERGE_QUEUE = 'merge';

/** Deterministic BullMQ job id of a batch at a stage. */
export function stageJobId(runId: string, batch: number, stage: number): string {
  return `${runId}-b${batch}-s${stage}`;
}

/**
 * Id of a batch's result part at a stage in the run tracker's set of counted parts
 * (`b<batch>s<stage>`), unique within a run: a part is counted once however often its job runs.
 */
export function partId(batch: number, stage: number): string {
  return `b${batch}s${stage}`;
}

/** Deterministic id of a run's merge job. */
export function mergeJobId(runId: string): string {
  return `${runId}-merge`;
}

/** Retry policy shared by all cascade jobs. */
export const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;
