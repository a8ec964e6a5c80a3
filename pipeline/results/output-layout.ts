/**
 * The run's output layout: every key a run writes under its output location, in one place, so
 * the writers (workers, merge, CLI) and the readers (verify, exports, --overwrite) cannot drift.
 */

/** The merged rows, one JSON line per listed image in input order. */
export const MANIFEST_KEY = 'manifest.jsonl';
/** Folder of the merged rows as Parquet shards: in key order, their rows are manifest.jsonl's, in its order. */
export const MANIFEST_SHARDS_PREFIX = 'manifest/';
/** The run's summary (counts, compute, provenance, plots, reviews). */
export const SUMMARY_KEY = 'summary.json';
/** Folder of the stage and warm-up result parts. */
export const PARTS_PREFIX = 'parts/';
/** Folder of the audit parts. */
export const AUDIT_PREFIX = 'audit/';
/** Folder of cascade's own bookkeeping: the run marker and preflight's write probes. */
export const CASCADE_PREFIX = '_cascade/';
/** Where a run marks its output location as its own, before any job is queued. */
export const RUN_MARKER_KEY = `${CASCADE_PREFIX}run.json`;
/** The confidence histogram the merge draws, as SVG and PNG. */
export const CONFIDENCE_SVG_KEY = 'confidence.svg';
export const CONFIDENCE_PNG_KEY = 'confidence.png';
/** The calibration curve with the run's realised operating point (runs started from a calibration). */
export const CALIBRATION_SVG_KEY = 'calibration.svg';
/** The calibration curve a run was started with, kept for the merge's plot. */
export const RUN_CALIBRATION_KEY = 'calibration-curve.json';
/** Human reviews imported by `cascade import reviews`. */
export const REVIEWS_KEY = 'reviews.jsonl';

/** A batch number as it appears in part keys: zero-padded so keys list in batch order. */
function batchName(batch: number): string {
  return String(batch).padStart(8, '0');
}

/** Object key of a result part under the run's output location. */
export function partKey(batch: number, stage: number): string {
  return `${PARTS_PREFIX}${batchName(batch)}.stage${stage}.json`;
}

/** Object key of the manifest's `index`-th Parquet shard (`manifest/part-00000.parquet`, …). */
export function manifestShardKey(index: number): string {
  return `${MANIFEST_SHARDS_PREFIX}part-${String(index).padStart(5, '0')}.parquet`;
}

/** Whether `key` names a manifest shard (what readers take from a listing of MANIFEST_SHARDS_PREFIX). */
export function isManifestShardKey(key: string): boolean {
  return /^manifest\/part-\d{5,}\.parquet$/.test(key);
}

/**
 * Batches per manifest shard: shard k holds batches [k·B, (k+1)·B), so ~`shardRows` rows (fewer
 * where sharded inputs cut short batches). By batch range, a shard is known before its rows are,
 * so it can be written as soon as its batches are final, in any order.
 */
export function batchesPerShard(shardRows: number, batchSize: number): number {
  return Math.max(1, Math.ceil(shardRows / batchSize));
}

/** How many shards a run of `batches` batches has: at least one (an empty run's shard holds the schema). */
export function shardCount(batches: number, perShard: number): number {
  return Math.max(1, Math.ceil(batches / perShard));
}

/** The batches [from, to) of shard `index` in a run of `batches` batches. */
export function shardBatchRange(index: number, perShard: number, batches: number): { from: number; to: number } {
  return { from: Math.min(index * perShard, batches), to: Math.min((index + 1) * perShard, batches) };
}

/** Folder of the manifest shards' partial summaries: cascade's bookkeeping, not the manifest. */
export const MANIFEST_SHARD_SUMMARIES_PREFIX = `${CASCADE_PREFIX}manifest/`;

/** Object key of shard `index`'s partial summary, put after the shard: its presence says the shard is written. */
export function manifestShardSummaryKey(index: number): string {
  return `${MANIFEST_SHARD_SUMMARIES_PREFIX}part-${String(index).padStart(5, '0')}.json`;
}

/** The shard index a key names, if it is a shard's partial summary. */
export function shardSummaryIndex(key: string): number | null {
  const m = /^_cascade\/manifest\/part-(\d{5,})\.json$/.exec(key);
  return m ? Number(m[1]) : null;
}

/** Object key of a batch's warm-up part at a stage. */
export function warmupPartKey(batch: number, stage: number): string {
  return `${PARTS_PREFIX}${batchName(batch)}.warmup.stage${stage}.json`;
}

/** Object key of a batch's audit part under the run's output location. */
export function auditKey(batch: number): string {
  return `${AUDIT_PREFIX}${batchName(batch)}.json`;
}

/** Object key of one of preflight's write probes (written and deleted at once). */
export function writeProbeKey(id: string): string {
  return `${CASCADE_PREFIX}.probe-${id}`;
}

/**
 * The keys a run writes under its output location: what --overwrite removes of an earlier run.
 * The marker's folder comes last: while the marker stands, no other run can take the location
 * half-cleared. Human reviews of an earlier run's answers do not belong to a new run either.
 */
export const RUN_OBJECT_PREFIXES: readonly string[] = [
  PARTS_PREFIX,
  AUDIT_PREFIX,
  MANIFEST_KEY,
  MANIFEST_SHARDS_PREFIX,
  SUMMARY_KEY,
  CONFIDENCE_SVG_KEY,
  CONFIDENCE_PNG_KEY,
  CALIBRATION_SVG_KEY,
  RUN_CALIBRATION_KEY,
  REVIEWS_KEY,
  CASCADE_PREFIX,
];
