/**
 * BullMQ job payloads and queue naming. A stage job carries a batch of image refs, never
 * one image; ids are deterministic so resubmitting or retrying never duplicates work.
 */
import { z } from 'zod';
import {
  ConfidenceMetric,
  InputColumns,
  Limits,
  Numerics,
  OutputSettings,
  Prices,
  Route,
  RANK_NEEDS_REFERENCE,
  RANK_TWO_STAGES,
  RankReference,
} from '../config/schema.js';
import { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import { ModelPin } from '../pipeline/models/model-pin.js';
import { DECIDED_AT_WARMUP } from '../pipeline/routing-resolver.js';
import { WarmupSize } from '../pipeline/warmup-sample.js';
import { ReviewCalibrationRecord } from '../pipeline/reviews/review-calibration-record.js';

/** Ids become Redis keys and BullMQ job ids: keep them to a safe alphabet (no ':'). */
export const RunId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'run ids use letters, digits, _ and - (at most 64)');

/** The fields of a run spec, before the checks across fields (see RunSpec). */
export const RunSpecFields = z.object({
  runId: RunId,
  source: z.string(),
  /** Parquet sources: the columns named by the config or flags (absent: found by name). */
  columns: InputColumns.optional(),
  out: z.string(),
  metric: ConfidenceMetric,
  /**
   * Metric rank only: what the first stage ranks each image against (from the run's calib.json).
   * A self-calibrating rank run has none: its warm-up builds one, stored with its decision.
   */
  rankReference: RankReference.optional(),
  batchSize: z.number().int().positive(),
  /** Stage 0 is the little model, the last stage the big one. */
  stages: z
    .array(
      z.object({
        name: z.string(),
        /** The model every worker of this stage must use for this run, by content. */
        model: ModelPin,
        gmacsPerImage: z.number().nonnegative(),
        /**
         * null on the last stage; DECIDED_AT_WARMUP on the first stage of a self-calibrating run,
         * whose threshold is certified from its warm-up sample and stored with the run (a worker
         * of an older version refuses such a spec instead of routing without the threshold).
         * Read through pipeline/routing-resolver.ts only.
         */
        threshold: z.union([z.number().min(0).max(1), z.literal(DECIDED_AT_WARMUP)]).nullable(),
      }),
    )
    .min(2),
  /** Int8 kernel choice on the CPU provider (auto: each worker's, held to the exact reference); part of the run because it changes answers. */
  numerics: Numerics,
  /** Image limits; part of the run because an image over them becomes an error row. */
  limits: Limits,
  /** Largest probe difference a worker may show and still label this run. */
  probeTolerance: z.number().min(0),
  /** Audit sampling of first-stage accepted images (absent on runs without audits). */
  audit: z.object({ fraction: z.number().min(0).max(1), seed: z.string(), expectAgreement: z.number().min(0).max(1).optional() }).optional(),
  /** A self-calibrating run (`--target-agreement`): its first stage's threshold is decided from a warm-up sample. */
  selfCalibration: z
    .object({
      /** Agreement with the last stage the accepted images must reach, with probability ≥ 1 − delta. */
      targetAgreement: z.number().gt(0).lt(1),
      delta: z.number().gt(0).lt(1),
      /** The requested warm-up size; absent: the default for the target (pipeline/warmup-sample.ts). */
      warmup: WarmupSize.optional(),
    })
    .strict()
    .optional(),
  /** `big-only`: every image goes straight to the last stage, the others hand batches on unread (absent: through the cascade). */
  route: Route.optional(),
  /** A scheduled firing calibrated from human reviews (`schedule add --calibration-from`): the reviews it used, what they certified or why not. */
  reviewCalibration: ReviewCalibrationRecord.optional(),
  /** Prices of machine time the summary reports cost at (absent in older specs: the defaults). Not part of the run's identity. */
  prices: Prices.optional(),
  /** How the merge writes the manifest (absent in older specs: the defaults). Not part of the run's identity: it stores the same rows. */
  output: OutputSettings.optional(),
  /**
   * BullMQ queues per stage that the run's jobs go to (`queues.shards` at submit, queue/queue-shards.ts;
   * absent in older specs: 1). Stored so that every process queues the run's jobs where its first
   * ones went, and a worker consuming another layout can say so. Not part of the run's identity: it moves no row.
   */
  queueShards: z.number().int().min(1).max(256).optional(),
  createdAt: z.string(),
});

/**
 * What every worker needs to know about a run; stored once in Redis at submission. A rank run
 * without its reference is refused here unless it is self-calibrating (its decision then carries
 * the reference), so no worker routes one without it (a worker of an older version refuses the
 * metric itself).
 */
export const RunSpec = RunSpecFields.superRefine((spec, ctx) => checkRankRun(spec, ctx));
export type RunSpec = z.infer<typeof RunSpec>;

/** The cross-field rules of metric rank: a reference (a self-calibrating run's comes from its warm-up), and a little/big pair. */
export function checkRankRun(spec: Pick<z.infer<typeof RunSpecFields>, 'metric' | 'rankReference' | 'stages' | 'selfCalibration'>, ctx: z.RefinementCtx): void {
  if (spec.metric !== 'rank') return;
  if (spec.rankReference === undefined && !spec.selfCalibration) ctx.addIssue({ code: 'custom', path: ['rankReference'], message: RANK_NEEDS_REFERENCE });
  if (spec.rankReference !== undefined && spec.selfCalibration) ctx.addIssue({ code: 'custom', path: ['rankReference'], message: RANK_FROM_WARMUP });
  if (spec.stages.length > 2) ctx.addIssue({ code: 'custom', path: ['metric'], message: RANK_TWO_STAGES });
}

/** Why a self-calibrating rank run carries no reference: one reference per run, the one its warm-up builds. */
export const RANK_FROM_WARMUP = 'a self-calibrating run builds its rank reference from its warm-up: it takes none from a config or calib.json';

/** One batch of images for one stage. `pos` is each image's position in its original batch. */
export const StageJob = z.object({
  runId: RunId,
  batch: z.number().int().nonnegative(),
  stage: z.number().int().nonnegative(),
  /**
   * Self-calibrating runs only. `warmup` on the lane of warm-up images (they go through every
   * stage, parts `parts/<batch>.warmup.stage<k>.json`); on the first stage's ordinary job, the
   * items flagged `warmup` are the batch's warm-up images, skipped there (their rows come from
   * the warm-up lane) and counted in its part, so the merge knows to read that lane.
   */
  lane: z.literal('warmup').optional(),
  /** `at`: a sharded sample's place in its shard (pipeline/inputs/sample-locator.ts), carried to every stage. */
  items: z.array(z.object({ ref: z.string(), pos: z.number().int().nonnegative(), warmup: z.literal(true).optional(), at: SampleLocator.optional() })).min(1),
});
export type StageJob = z.infer<typeof StageJob>;

/** Deterministic BullMQ job id of a batch's warm-up lane at a stage. */
export function warmupJobId(runId: string, batch: number, stage: number): string {
  return `${runId}-b${batch}-w${stage}`;
}

/** Id of a batch's warm-up part at a stage among the run tracker's counted parts. */
export function warmupPartId(batch: number, stage: number): string {
  return `b${batch}w${stage}`;
}

/** The job id of a stage job, in its lane. */
export function laneJobId(job: Pick<StageJob, 'runId' | 'batch' | 'stage' | 'lane'>): string {
  return job.lane === 'warmup' ? warmupJobId(job.runId, job.batch, job.stage) : stageJobId(job.runId, job.batch, job.stage);
}

/** BullMQ job name of a self-calibrating run's threshold decision, on the first stage's queue. */
export const DECIDE_JOB_NAME = 'decide';

export const DecideJob = z.object({ runId: RunId });
export type DecideJob = z.infer<typeof DecideJob>;

/** Deterministic BullMQ job id of a run's threshold decision. */
export function decideJobId(runId: string): string {
  return `${runId}-decide`;
}

/**
 * Images the first stage accepted that the last stage must also label, with the first stage's
 * answer; it runs on the last stage's queue as a job named AUDIT_JOB_NAME.
 */
export const AuditJob = z.object({
  runId: RunId,
  batch: z.number().int().nonnegative(),
  items: z
    .array(
      z.object({
        ref: z.string(),
        pos: z.number().int().nonnegative(),
        at: SampleLocator.optional(),
        label: z.number().int(),
        labelName: z.string().nullable(),
        confidence: z.number(),
      }),
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
 * Id of a batch's audit part among the run tracker's counted parts (`b<batch>audit`): the
 * last stage counts an audit part once by this id, into the audit counters, never the final rows.
 */
export function auditPartId(batch: number): string {
  return `b${batch}audit`;
}

/**
 * A run's listing beyond its first window: one job per run on LISTING_QUEUE (the merge role),
 * which queues batches while fewer than the window are in flight and then puts itself back,
 * delayed, until the source is listed.
 */
export const ListingJob = z.object({ runId: RunId });
export type ListingJob = z.infer<typeof ListingJob>;

export const LISTING_QUEUE = 'listing';

/** Deterministic BullMQ job id of a run's listing job. */
export function listingJobId(runId: string): string {
  return `${runId}-list`;
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
 * Id of a batch's result part at a stage among the run tracker's counted parts
 * (`b<batch>s<stage>`), unique within a run: a part is counted once however often its job runs.
 */
export function partId(batch: number, stage: number): string {
  return `b${batch}s${stage}`;
}

/**
 * A counted part id taken apart: its batch and its kind (`s<k>` ordinary stage k, `w<k>` warm-up
 * stage k, `audit`), the run tracker's key for one bitmap of batches per kind.
 */
export function parsePartId(id: string): { batch: number; kind: string } {
  const m = /^b(\d+)(s\d+|w\d+|audit)$/.exec(id);
  if (!m) throw new Error(`'${id}' is not a part id (b<batch>s<stage>, b<batch>w<stage> or b<batch>audit)`);
  return { batch: Number(m[1]), kind: m[2]! };
}

/** Deterministic id of a run's merge job. */
export function mergeJobId(runId: string): string {
  return `${runId}-merge`;
}

/**
 * Length (approximate, trimmed in whole stream nodes) of each queue's BullMQ event stream. Every
 * job state change appends to it inside BullMQ's scripts whether or not anyone listens; Cascade
 * reads no events (progress lives in the run tracker), so the stream is kept short: BullMQ's
 * default of 10,000 entries is about 1 MB of Redis per queue for nothing.
 */
export const EVENTS_MAX_LEN = 1000;

/**
 * Seconds an idle worker's blocking wait for a job lasts before it asks again. The wait ends as
 * soon as a job is added (BullMQ's marker), and delayed retries shorten it, so a long one only
 * cuts idle polls; BullMQ's default is 5.
 */
export const IDLE_WAIT_SECONDS = 30;

/** Retry policy shared by all cascade jobs. */
export const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
} as const;
