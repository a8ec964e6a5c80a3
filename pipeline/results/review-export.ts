/**
 * Human review export: pick the images of a finished run worth a human look — errors, audit
 * disagreements between the first and last stage, low final confidence — and render them as
 * Label Studio import tasks (with the model's answer as a pre-annotation) or as a plain CSV.
 * With a budget, a random slice of the run (for an unbiased accuracy estimate) plus the images
 * most likely wrong. Reads only the run's output location: its manifest and audit/*.json.
 */
import { z } from 'zod';
import { AuditPart, type AuditEntry } from '../audit/audit-part.js';
import { auditDraw } from '../audit/audit-sample.js';
import type { ManifestRow } from './manifest.js';
import { noRunOutput } from './manifest-reader.js';
import { AUDIT_PREFIX } from './output-layout.js';
import { isRemoteUrl } from '../storage/location.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';

export const ReviewReason = z.enum(['errors', 'disagreements', 'low-confidence']);
export type ReviewReason = z.infer<typeof ReviewReason>;
/** Why an image is in a review set: a reason asked for, or the budget's uniform random slice. */
export type ReviewPick = ReviewReason | 'random';

export interface ReviewOptions {
  /** Reasons to include. */
  include: ReadonlySet<ReviewReason>;
  /** Rows with a final confidence below this are "low-confidence". */
  maxConfidence: number;
}

/** One image selected for review, with every reason that selected it. */
export interface ReviewItem {
  row: ManifestRow;
  reasons: ReviewPick[];
  /** The audit of this image, when it was audited and the stages disagreed. */
  audit: AuditEntry | null;
}

/** Parse `errors,disagreements` into reasons; throws naming the bad value. */
export function parseReasons(list: string): Set<ReviewReason> {
  const reasons = new Set<ReviewReason>();
  for (const raw of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const parsed = ReviewReason.safeParse(raw);
    if (!parsed.success) throw new Error(`--include: unknown reason "${raw}" (use ${ReviewReason.options.join(', ')})`);
    reasons.add(parsed.data);
  }
  if (reasons.size === 0) throw new Error(`--include: no reason given (use ${ReviewReason.options.join(', ')})`);
  return reasons;
}

/** Every audit entry of the run, by image key (none for runs without audits). */
export async function readAuditEntries(store: ObjectStore): Promise<Map<string, AuditEntry>> {
  const found = new Map<string, AuditEntry>();
  try {
    for await (const { key } of store.list(AUDIT_PREFIX)) {
      if (!key.endsWith('.json')) continue;
      const part = await readJson(store, key, AuditPart);
      for (const entry of part.entries) found.set(entry.key, entry);
    }
  } catch (err) {
    // Listing fails as not-found only when the bucket itself is missing: no run output at all.
    throw isObjectNotFound(err) ? noRunOutput(store, err) : err;
  }
  return found;
}

/** Audit entries where the last stage disagreed with the first, by image key (none for runs without audits). */
export async function readDisagreements(store: ObjectStore): Promise<Map<string, AuditEntry>> {
  return new Map([...(await readAuditEntries(store))].filter(([, entry]) => entry.agree === false));
}

/** The rows worth a human look, in manifest order, each with its reasons; `rows` counts every row read. */
export async function selectForReview(
  rows: AsyncIterable<ManifestRow> | Iterable<ManifestRow>,
  disagreements: ReadonlyMap<string, AuditEntry>,
  o: ReviewOptions,
): Promise<{ items: ReviewItem[]; rows: number }> {
  const items: ReviewItem[] = [];
  let count = 0;
  for await (const row of rows) {
    count++;
    const reasons: ReviewReason[] = [];
    const audit = disagreements.get(row.key) ?? null;
    if (o.include.has('errors') && row.error) reasons.push('errors');
    if (o.include.has('disagreements') && audit) reasons.push('disagreements');
    if (o.include.has('low-confidence') && !row.error && row.confidence !== null && row.confidence < o.maxConfidence) reasons.push('low-confidence');
    if (reasons.length > 0) items.push({ row, reasons, audit: reasons.includes('disagreements') ? audit : null });
  }
  return { items, rows: count };
}

export interface BudgetOptions {
  /** At most this many images in all. */
  budget: number;
  /** The share of the budget given to the random slice (the rest goes to the likeliest wrong). */
  randomShare: number;
  /** The run id: the random slice is drawn by a hash of (run id, key), the same on every export. */
  runId: string;
  /** Errors are picked (after every labelled candidate) only when asked for. */
  include: ReadonlySet<ReviewReason>;
}

/**
 * A review set within a budget of K images: first a random slice of round(K × share) labelled
 * rows (the smallest hash draws: a uniform sample of the run's labelled rows, so its reviews
 * estimate the run's accuracy without bias), then, from the rest, the images most likely wrong:
 * audit disagreements, then the lowest final confidence, then (if asked) errors. In manifest order.
 */
export async function selectWithinBudget(
  rows: AsyncIterable<ManifestRow> | Iterable<ManifestRow>,
  disagreements: ReadonlyMap<string, AuditEntry>,
  o: BudgetOptions,
): Promise<{ items: ReviewItem[]; rows: number }> {
  const all: ManifestRow[] = [];
  for await (const row of rows) all.push(row);
  const labelled = all.filter((r) => !r.error && r.label !== null);
  const randomCount = Math.min(Math.round(o.budget * o.randomShare), labelled.length);
  const random = new Set(
    labelled
      .map((row) => ({ row, draw: auditDraw(o.runId, 'review', row.key) }))
      .sort((a, b) => a.draw - b.draw)
      .slice(0, randomCount)
      .map((d) => d.row.key),
  );
  const candidates = labelled.filter((r) => !random.has(r.key));
  const disagree = (r: ManifestRow) => o.include.has('disagreements') && disagreements.has(r.key);
  const ranked = candidates
    .filter((r) => disagree(r) || o.include.has('low-confidence'))
    .sort((a, b) => Number(disagree(b)) - Number(disagree(a)) || (a.confidence ?? 0) - (b.confidence ?? 0));
  const errors = o.include.has('errors') ? all.filter((r) => r.error) : [];
  const picked = new Map<string, ReviewPick[]>([...random].map((k) => [k, ['random']]));
  for (const row of [...ranked, ...errors].slice(0, Math.max(0, o.budget - randomCount))) {
    picked.set(row.key, [row.error ? 'errors' : disagree(row) ? 'disagreements' : 'low-confidence']);
  }
  const items = all.filter((r) => picked.has(r.key)).map((row) => ({ row, reasons: picked.get(row.key)!, audit: disagreements.get(row.key) ?? null }));
  return { items, rows: all.length };
}

/**
 * How an image key appears in a task. S3 keys stay `s3://…` (Label Studio signs them through a
 * configured S3 source storage). Local paths under `localFilesRoot` become Label Studio's
 * local-files URLs (`/data/local-files/?d=<path relative to LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT>`);
 * other local paths are kept as they are, since only the user knows how they are served.
 */
export function imageRef(key: string, localFilesRoot?: string): string {
  if (isRemoteUrl(key) || !localFilesRoot) return key;
  const root = localFilesRoot.replace(/\/+$/, '');
  if (!key.startsWith(`${root}/`)) return key;
  return `/data/local-files/?d=${encodeURIComponent(key.slice(root.length + 1)).replace(/%2F/g, '/')}`;
}

/** A Label Studio choice pre-annotation (Choices control "choice" on Image "image"). */
function prediction(modelVersion: string, labelName: string | null, label: number | null, score: number | null) {
  return {
    model_version: modelVersion,
    score: score ?? 0,
    result: [{ from_name: 'choice', to_name: 'image', type: 'choices', value: { choices: [labelName ?? String(label)] } }],
  };
}

/**
 * Label Studio import tasks: `data.image` plus the cascade's answer as a prediction; for an audit
 * disagreement the last stage's answer is a second prediction. Errors carry no prediction.
 * Extra `data` fields (key, run, reason, error) show up as columns in Label Studio's data manager.
 */
export function labelStudioTasks(items: ReviewItem[], o: { localFilesRoot?: string; runId?: string } = {}): unknown[] {
  return items.map(({ row, reasons, audit }) => {
    const predictions = row.error ? [] : [prediction(row.stage ?? 'cascade', row.labelName, row.label, row.confidence)];
    if (audit?.big) predictions.push(prediction(`${audit.big.stage} (audit)`, audit.big.labelName, audit.big.label, audit.big.confidence));
    return {
      data: {
        image: imageRef(row.key, o.localFilesRoot),
        key: row.key,
        // The run and the reason travel with the task: the import matches the one and reports by the other.
        ...(o.runId ? { run: o.runId } : {}),
        reason: reasons.join(';'),
        ...(row.error ? { error: `${row.error.kind}: ${row.error.message}` } : {}),
      },
      predictions,
    };
  });
}

const CSV_COLUMNS = ['key', 'reason', 'label', 'labelName', 'confidence', 'stage', 'error', 'auditLabelName'] as const;

/** Quote a CSV field when it needs it (RFC 4180). */
function csvField(value: string | number | null): string {
  const s = value === null ? '' : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The selection as CSV: one line per image; `auditLabelName` is the last stage's answer on a disagreement. */
export function reviewCsv(items: ReviewItem[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const { row, reasons, audit } of items) {
    const error = row.error ? `${row.error.kind}: ${row.error.message}` : null;
    lines.push([row.key, reasons.join(';'), row.label, row.labelName, row.confidence, row.stage, error, audit?.big?.labelName ?? null].map(csvField).join(','));
  }
  return `${lines.join('\n')}\n`;
}
