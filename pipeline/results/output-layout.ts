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
