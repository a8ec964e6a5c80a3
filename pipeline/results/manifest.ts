/**
 * The result data model: per-image manifest rows, per-batch result parts, and the run
 * summary computed from the parts. Pure functions; the merge step does the I/O.
 */
import { ReviewCalibrationRecord } from '../reviews/review-calibration-record.js';
import { z } from 'zod';
import { AuditSummary } from '../audit/audit-summary.js';
import { ReviewReport } from '../reviews/review-summary.js';
import { SelfCalibrationSummary } from '../self-calibration.js';
import { addPartCost, emptyCostTotals, PartCost, RunCost, runCost } from '../cost/run-cost.js';
import { DEFAULT_PRICES, type Prices, WorkerClass } from '../../config/schema.js';

/**
 * Why an input has no label. `forbidden`: its ref names something the worker may not read (a
 * local path outside `sources.localRoots`, a special file, an S3 key with a `..` segment).
 */
export const ImageErrorKind = z.enum(['not-found', 'too-large', 'decode', 'inference', 'fetch', 'job-failed', 'forbidden']);
export type ImageErrorKind = z.infer<typeof ImageErrorKind>;

/** One row of manifest.jsonl: the final answer for one input image, or why there is none. */
export const ManifestRow = z.object({
  key: z.string(),
  label: z.number().int().nullable(),
  labelName: z.string().nullable(),
  confidence: z.number().nullable(),
  /** Name of the stage whose answer was kept (little, big, …); null for errors. */
  stage: z.string().nullable(),
  top5: z.array(z.object({ label: z.number().int(), name: z.string().nullable(), p: z.number() })),
  error: z.object({ kind: ImageErrorKind, message: z.string() }).nullable(),
});
export type ManifestRow = z.infer<typeof ManifestRow>;

/** Timings and counts of one stage over one batch. */
export const StageStats = z.object({
  /** Images this stage looked at (including ones that failed). */
  images: z.number().int().nonnegative(),
  accepted: z.number().int().nonnegative(),
  forwarded: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  fetchMs: z.number().nonnegative(),
  decodeMs: z.number().nonnegative(),
  inferMs: z.number().nonnegative(),
  /** Wall time of the whole job. */
  jobMs: z.number().nonnegative(),
});
export type StageStats = z.infer<typeof StageStats>;

/** A row tagged with its position in the original batch, so merged manifests keep input order. */
export const PartRow = ManifestRow.extend({ pos: z.number().int().nonnegative() });
export type PartRow = z.infer<typeof PartRow>;

/** What one stage wrote for one batch. Idempotent: the same batch and stage always write the same key. */
/** The process that wrote a result part and the numerics it labelled with (exact or native, never auto). */
export const PartWriter = z.object({
  host: z.string(),
  pid: z.number().int(),
  arch: z.string(),
  cpuFlags: z.array(z.string()),
  onnxruntime: z.string(),
  provider: z.string(),
  numerics: z.string(),
  /** The model file's sha256 the worker verified. */
  sha256: z.string(),
  /** Its probe's largest difference from the run's reference. */
  probeMaxDiff: z.number(),
});
export type PartWriter = z.infer<typeof PartWriter>;

export const ResultPart = z.object({
  runId: z.string(),
  batch: z.number().int().nonnegative(),
  stage: z.number().int().nonnegative(),
  stageName: z.string(),
  rows: z.array(PartRow),
  stats: StageStats,
  /** First stage only: accepted images also sent to the last stage as an audit (audit/<batch>.json). */
  audits: z.number().int().nonnegative().optional(),
  /** Images this stage handed on unread: the run decided to send them straight to the last stage. */
  skipped: z.number().int().nonnegative().optional(),
  /** First stage of a self-calibrating run: the batch's warm-up images, skipped here (their rows are in the warm-up parts). */
  warmup: z.number().int().nonnegative().optional(),
  /** This stage's confidence in each image it forwarded (for the run's confidence histogram). */
  forwardedConfidence: z.array(z.number()).optional(),
  /** Who wrote the part, with what (absent in parts of older versions). */
  writer: PartWriter.optional(),
  /** The machine time the stage spent on this batch (absent in parts of older versions: the summary counts them as unknown). */
  cost: PartCost.optional(),
});
export type ResultPart = z.infer<typeof ResultPart>;

/** Combine the parts of one batch into manifest rows in input order, checking none is lost or doubled. */
export function mergeBatchRows(parts: ResultPart[], expected: number): ManifestRow[] {
  const byPos = new Map<number, PartRow>();
  for (const part of parts) {
    for (const row of part.rows) {
      if (byPos.has(row.pos)) throw new Error(`batch ${part.batch}: image ${row.pos} (${row.key}) has rows from two stages`);
      byPos.set(row.pos, row);
    }
  }
  if (byPos.size !== expected) {
    const batch = parts[0]?.batch ?? '?';
    throw new Error(`batch ${batch}: ${byPos.size} of ${expected} images have a final row`);
  }
  return [...byPos.keys()].sort((a, b) => a - b).map((pos) => stripPos(byPos.get(pos)!));
}

function stripPos({ pos: _pos, ...row }: PartRow): ManifestRow {
  return row;
}

export const StageSummary = StageStats.omit({ jobMs: true }).extend({
  name: z.string(),
  gmacsPerImage: z.number().nonnegative(),
  jobs: z.number().int().nonnegative(),
  /** Fraction of the images the first stage inferred that this stage inferred (1 for the first). */
  reach: z.number().optional(),
  /** Mean ms per image this stage saw, by step. */
  msPerImage: z.object({ fetch: z.number(), decode: z.number(), infer: z.number(), job: z.number() }),
  /** The model the run pinned for this stage (absent in summaries of older versions). */
  model: z.object({ name: z.string(), path: z.string(), sha256: z.string() }).optional(),
  /** How the stage's parts were computed, from their writers: distinct values over the parts. */
  provenance: z
    .object({
      /** The run's numerics mode (auto, exact or native). */
      numerics: z.string(),
      /** What the parts' writers ran: exact and/or native (under auto, each worker's choice); absent in older summaries. */
      numericsUsed: z.array(z.string()).optional(),
      executionProviders: z.array(z.string()),
      onnxruntime: z.array(z.string()),
      cpus: z.array(z.string()),
      /** Distinct worker processes (host:pid) that wrote this stage's parts. */
      workers: z.number().int().nonnegative(),
      /** Largest probe difference any of them showed against the run's reference. */
      probeMaxDiff: z.number(),
      /** The run's limit for that difference (a worker beyond it refuses the model). */
      probeTolerance: z.number(),
    })
    .optional(),
});

export const RunSummary = z.object({
  runId: z.string(),
  source: z.string(),
  out: z.string(),
  images: z.number().int(),
  labeled: z.number().int(),
  errors: z.number().int(),
  errorsByKind: z.record(z.string(), z.number().int()),
  /** Key-list lines whose key was already listed: dropped, so each key has one row (absent in older summaries). */
  duplicatesDropped: z.number().int().nonnegative().optional(),
  threshold: z.number(),
  metric: z.string(),
  /** Fraction of successfully decoded images that reached the last stage. */
  fractionToBig: z.number(),
  stages: z.array(StageSummary),
  /** Measured machine time and money against the big model alone (absent in summaries of older versions). */
  cost: RunCost.optional(),
  /** A secondary, machine-independent figure: compute counted from the models' graphs. */
  macs: z.object({
    /** GMACs the cascade spent, summed over stages and images. */
    cascadeG: z.number(),
    /** GMACs the big model alone would have spent on the same images. */
    bigOnlyG: z.number(),
    /** 1 − cascade / big-only. */
    saved: z.number(),
  }),
  wallSeconds: z.number(),
  imagesPerSecond: z.number(),
  startedAt: z.string(),
  finishedAt: z.string(),
  /** Audit sampling results, on runs with audits. */
  audit: AuditSummary.optional(),
  /** The calibration the run was started with: its promise beside what this run realised. */
  calibration: z
    .object({
      rule: z.string(),
      metric: z.string(),
      threshold: z.number(),
      expected: z.object({ fractionToBig: z.number(), gmacsPerImage: z.number(), agreement: z.number() }),
      realised: z.object({ fractionToBig: z.number(), gmacsPerImage: z.number(), agreement: z.number().nullable() }),
    })
    .optional(),
  /** `big-only`: the run sent every image straight to its last stage, and why (absent: through the cascade). */
  route: z.object({ route: z.literal('big-only'), reason: z.string() }).optional(),
  /** A self-calibrating run's warm-up, decision and the compute the warm-up spent (counted in `macs` too). */
  selfCalibration: SelfCalibrationSummary.optional(),
  /** What the human reviews of the run show (`cascade import reviews` writes it; docs/reviews.md). */
  reviews: ReviewReport.optional(),
  /** A scheduled firing calibrated from a reviewed run (`schedule add --calibration-from`): the reviews it used and what they certified. */
  reviewCalibration: ReviewCalibrationRecord.optional(),
  /** How the merge stored the manifest: manifest.jsonl or not, and how many Parquet shards under manifest/ (absent in older summaries: JSONL only). */
  manifest: z.object({ jsonl: z.boolean(), parquetShards: z.number().int().nonnegative() }).optional(),
  /** Plot files written next to the summary (keys under the output location). */
  plots: z.object({ confidenceSvg: z.string(), confidencePng: z.string(), calibrationSvg: z.string().optional() }).optional(),
});
export type RunSummary = z.infer<typeof RunSummary>;

export interface SummaryInput {
  runId: string;
  source: string;
  out: string;
  threshold: number;
  metric: string;
  /** `threshold` (null on the last stage) is only drawn in plots; absent means unknown. */
  stages: Array<{ name: string; gmacsPerImage: number; threshold?: number | null; model?: { name: string; path: string; sha256: string } }>;
  parts: Iterable<Pick<ResultPart, 'stage' | 'stats' | 'writer' | 'cost' | 'skipped'>>;
  /** Prices the cost is reported at; absent: the defaults. */
  prices?: Prices;
  /** The run's numerics mode and probe tolerance, reported beside each stage's provenance. */
  numerics?: string;
  probeTolerance?: number;
  errorsByKind: Record<string, number>;
  images: number;
  startedAt: Date;
  finishedAt: Date;
}

/**
 * One stage's parts folded: counts, times, the writers' provenance (as sorted distinct values)
 * and cost. JSON-safe, so a shard's fold can be stored beside it and folded into the run's later
 * (addStageTotals) exactly as if the parts had been folded in one pass of shards in order.
 */
export const StageTotals = z.object({
  images: z.number(),
  accepted: z.number(),
  forwarded: z.number(),
  errors: z.number(),
  fetchMs: z.number(),
  decodeMs: z.number(),
  inferMs: z.number(),
  jobMs: z.number(),
  jobs: z.number(),
  /** Images handed on unread. */
  skipped: z.number(),
  providers: z.array(z.string()),
  numerics: z.array(z.string()),
  onnxruntime: z.array(z.string()),
  cpus: z.array(z.string()),
  /** Distinct writer processes (host:pid). */
  processes: z.array(z.string()),
  probeMaxDiff: z.number(),
  cost: z.object({
    name: z.string(),
    inferred: z.number(),
    seconds: z.number(),
    decodeSeconds: z.number(),
    inferSeconds: z.number(),
    decoded: z.number(),
    workerClass: WorkerClass.nullable(),
    unknownParts: z.number(),
  }),
});
export type StageTotals = z.infer<typeof StageTotals>;

const STAT_FIELDS = ['images', 'accepted', 'forwarded', 'errors', 'fetchMs', 'decodeMs', 'inferMs', 'jobMs'] as const;
const WRITER_SETS = ['providers', 'numerics', 'onnxruntime', 'cpus', 'processes'] as const;

/** Empty totals for `stages` stages. */
export function emptyStageTotals(stages: number): StageTotals[] {
  return Array.from({ length: stages }, () => ({
    images: 0,
    accepted: 0,
    forwarded: 0,
    errors: 0,
    fetchMs: 0,
    decodeMs: 0,
    inferMs: 0,
    jobMs: 0,
    jobs: 0,
    skipped: 0,
    providers: [],
    numerics: [],
    onnxruntime: [],
    cpus: [],
    processes: [],
    probeMaxDiff: 0,
    cost: emptyCostTotals([''])[0]!,
  }));
}

/** Adds a distinct value to a sorted list in place. */
function addSorted(list: string[], value: string): void {
  if (list.includes(value)) return;
  list.push(value);
  list.sort();
}

/** Fold one part into its stage's totals (in place). */
export function addPartToTotals(totals: StageTotals[], part: Pick<ResultPart, 'stage' | 'stats' | 'writer' | 'cost' | 'skipped'>): void {
  const t = totals[part.stage];
  if (!t) throw new Error(`part of unknown stage ${part.stage}`);
  const { stats, writer, cost, skipped: handedOn } = part;
  t.skipped += handedOn ?? 0;
  addPartCost(t.cost, cost, stats.images - stats.errors - (handedOn ?? 0));
  for (const k of STAT_FIELDS) t[k] += stats[k];
  t.jobs += 1;
  if (writer) {
    addSorted(t.providers, writer.provider);
    addSorted(t.numerics, writer.numerics);
    addSorted(t.onnxruntime, writer.onnxruntime);
    addSorted(t.cpus, `${writer.arch} [${writer.cpuFlags.join(' ')}]`);
    addSorted(t.processes, `${writer.host}:${writer.pid}`);
    t.probeMaxDiff = Math.max(t.probeMaxDiff, writer.probeMaxDiff);
  }
}

/** Fold `more` (a later shard's totals) into `into` (in place): sums, distinct values, the largest probe difference. */
export function addStageTotals(into: StageTotals[], more: readonly StageTotals[]): void {
  into.forEach((t, i) => {
    const m = more[i];
    if (!m) return;
    for (const k of [...STAT_FIELDS, 'jobs', 'skipped'] as const) t[k] += m[k];
    for (const k of WRITER_SETS) for (const v of m[k]) addSorted(t[k], v);
    t.probeMaxDiff = Math.max(t.probeMaxDiff, m.probeMaxDiff);
    for (const k of ['inferred', 'seconds', 'decodeSeconds', 'inferSeconds', 'decoded', 'unknownParts'] as const) t.cost[k] += m.cost[k];
    t.cost.workerClass ??= m.cost.workerClass;
  });
}

/** A stage's provenance from its parts' writers; nothing when no part recorded one. */
function provenanceOf(t: StageTotals, numerics: string | undefined, probeTolerance: number | undefined) {
  if (t.processes.length === 0 || numerics === undefined || probeTolerance === undefined) return {};
  return {
    provenance: {
      numerics,
      numericsUsed: [...t.numerics],
      executionProviders: [...t.providers],
      onnxruntime: [...t.onnxruntime],
      cpus: [...t.cpus],
      workers: t.processes.length,
      probeMaxDiff: t.probeMaxDiff,
      probeTolerance,
    },
  };
}

/** Compute the run summary from per-part statistics. */
export function summarize(input: SummaryInput): RunSummary {
  const totals = emptyStageTotals(input.stages.length);
  for (const part of input.parts) addPartToTotals(totals, part);
  return summarizeTotals(input, totals);
}

/** Compute the run summary from its stages' folded totals. */
export function summarizeTotals(input: Omit<SummaryInput, 'parts'>, totals: readonly StageTotals[]): RunSummary {
  const costs = input.stages.map((s, i) => ({ ...totals[i]!.cost, name: s.name }));
  const skipped = totals.map((t) => t.skipped);
  const stages = input.stages.map((s, i) => {
    const t = totals[i]!;
    const per = (ms: number) => (t.images ? ms / t.images : 0);
    return {
      name: s.name,
      gmacsPerImage: s.gmacsPerImage,
      images: t.images,
      accepted: t.accepted,
      forwarded: t.forwarded,
      errors: t.errors,
      fetchMs: t.fetchMs,
      decodeMs: t.decodeMs,
      inferMs: t.inferMs,
      jobs: t.jobs,
      msPerImage: { fetch: per(t.fetchMs), decode: per(t.decodeMs), infer: per(t.inferMs), job: per(t.jobMs) },
      ...(s.model ? { model: s.model } : {}),
      ...provenanceOf(t, input.numerics, input.probeTolerance),
    };
  });
  const errors = Object.values(input.errorsByKind).reduce((a, b) => a + b, 0);
  // Compute counts only what a model actually ran on: images that failed to decode cost nothing.
  const inferred = stages.map((s) => s.images - s.errors);
  // Images a stage handed on unread (a big-only route) cost it nothing.
  const cascadeG = stages.reduce((sum, s, i) => sum + (inferred[i]! - skipped[i]!) * s.gmacsPerImage, 0);
  const last = stages[stages.length - 1]!;
  const firstInferred = inferred[0] ?? 0;
  const bigOnlyG = firstInferred * last.gmacsPerImage;
  const wallSeconds = (input.finishedAt.getTime() - input.startedAt.getTime()) / 1000;
  return {
    runId: input.runId,
    source: input.source,
    out: input.out,
    images: input.images,
    labeled: input.images - errors,
    errors,
    errorsByKind: input.errorsByKind,
    threshold: input.threshold,
    metric: input.metric,
    fractionToBig: firstInferred ? inferred[inferred.length - 1]! / firstInferred : 0,
    stages: stages.map((s, i) => ({ ...s, reach: firstInferred ? inferred[i]! / firstInferred : 0 })),
    cost: runCost(costs, firstInferred, input.prices ?? DEFAULT_PRICES),
    macs: { cascadeG, bigOnlyG, saved: bigOnlyG ? 1 - cascadeG / bigOnlyG : 0 },
    wallSeconds,
    imagesPerSecond: wallSeconds > 0 ? input.images / wallSeconds : 0,
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
  };
}
