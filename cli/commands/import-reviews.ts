/**
 * `cascade import reviews <file…> --run <location>`: human reviews (Label Studio JSON, JSON-MIN or
 * CSV exports, Ground Truth output manifests) matched to the run's rows and stored as
 * `reviews.jsonl` under its output, and the report of what they show written into its
 * summary.json (`reviews`) and printed. A task that cannot be used is one warning line; a file
 * that cannot be read at all stops the import before anything is written.
 */
import { basename } from 'node:path';
import { ConfigError } from '../../config/load-config.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { readAuditEntries } from '../../pipeline/results/review-export.js';
import { matchReviews, mergeReviews, type ReviewRun } from '../../pipeline/reviews/match-reviews.js';
import { detectReviewFormat } from '../../pipeline/reviews/review-formats.js';
import { formatReviewReport, reviewReport } from '../../pipeline/reviews/review-report.js';
import { ReviewFileError, type ReviewRow } from '../../pipeline/reviews/review-row.js';
import type { ReviewReport } from '../../pipeline/reviews/review-summary.js';
import { readReviews, reviewsJsonl } from '../../pipeline/reviews/reviews-file.js';
import { REVIEWS_KEY, SUMMARY_KEY } from '../../pipeline/results/output-layout.js';
import { loadClassNames } from '../class-names.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import type { Stores } from '../../pipeline/storage/stores.js';
import { isObjectNotFound } from '../../pipeline/storage/object-store.js';
import { readSummary, withRun } from '../run-output.js';

export interface ImportReviewsOptions {
  run: string;
  /** The run's label file, or the model spec whose labels: it used. */
  labels?: string;
  model?: string;
  /** Ground Truth manifests: the label attribute (found on each line when not given). */
  labelAttribute?: string;
  json?: boolean;
}

/** The report, and what the import did. */
export type ImportResult = ReviewReport & {
  import: {
    files: number;
    tasks: number;
    reviews: number;
    added: number;
    replaced: number;
    unchanged: number;
    older: number;
    unannotated: number;
    warnings: string[];
  };
};

/** Largest review file read (a JS string holds about 512 MiB). */
const MAX_REVIEW_FILE_BYTES = 256 * 2 ** 20;

/** One review file's text, from a local path or any store of the registry (s3://…); a missing file is a usage error naming it. */
async function readReviewFile(file: string, stores: Stores): Promise<string> {
  try {
    return (await fetchRef(file, stores, { maxBytes: MAX_REVIEW_FILE_BYTES })).toString('utf8');
  } catch (err) {
    throw new ConfigError(isObjectNotFound(err) ? `review file not found: ${file}` : `review file ${file}: ${(err as Error).message}`);
  }
}

/** Import the review files into the run; prints the report (JSON with `json`) and one line per warning on stderr. */
export async function importReviewsCommand(files: string[], o: ImportReviewsOptions): Promise<ImportResult> {
  if (files.length === 0) throw new ConfigError('name at least one review file');
  const { file: labelFile, names } = await loadClassNames(o);
  return withRun(o.run, async (store, stores) => {
    const summary = await readSummary(store);
    const audits = await readAuditEntries(store);
    const rows = new Map<string, ManifestRow>();
    for await (const row of await openManifest(store)) {
      const name = row.label === null ? undefined : names[row.label];
      if (row.labelName !== null && name !== row.labelName)
        throw new ConfigError(
          `${row.key} is labelled ${row.label} "${row.labelName}", which ${labelFile} calls ${JSON.stringify(name ?? null)}: is it the run's label file?`,
        );
      rows.set(row.key, row);
    }
    const run: ReviewRun = { runId: summary.runId, rows, names, audits };
    // Every file is read and parsed before anything is stored: a bad one leaves the run as it was.
    const incoming: ReviewRow[] = [];
    const warnings: string[] = [];
    let tasks = 0;
    let unannotated = 0;
    for (const file of files) {
      const text = await readReviewFile(file, stores);
      const format = detectReviewFormat(file, text);
      if (!format) throw new ConfigError(`${file}: not a review file cascade reads (Label Studio JSON, JSON-MIN or CSV export, Ground Truth output manifest)`);
      const parsed = (() => {
        try {
          return format.parse(text, { labelAttribute: o.labelAttribute });
        } catch (err) {
          if (err instanceof ReviewFileError) throw new ConfigError(`${file}: ${err.message}`);
          throw err;
        }
      })();
      const matched = matchReviews(parsed.tasks, run, { format: format.name, file: basename(file) });
      tasks += parsed.tasks.length;
      unannotated += matched.unannotated;
      for (const w of [...parsed.warnings, ...matched.warnings]) warnings.push(`${file}: ${w}`);
      incoming.push(...matched.reviews);
    }
    const order = new Map([...rows.keys()].map((k, i) => [k, i]));
    const stored = await readReviews(store);
    const merged = mergeReviews(stored, incoming, (k) => order.get(k) ?? order.size);
    if (merged.added + merged.replaced > 0) await store.put(REVIEWS_KEY, reviewsJsonl(merged.rows));
    const report = reviewReport(rows.values(), new Map(merged.rows.map((r) => [r.key, r])), audits);
    // The stored object as it is (fields this version does not know are kept), with `reviews` set.
    const storedSummary = (await store.get(SUMMARY_KEY)).toString('utf8');
    const updated = `${JSON.stringify({ ...(JSON.parse(storedSummary) as object), reviews: report }, null, 2)}\n`;
    if (updated !== storedSummary) await store.put(SUMMARY_KEY, updated);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    const { rows: _rows, ...counts } = merged;
    const result: ImportResult = { ...report, import: { files: files.length, tasks, reviews: incoming.length, ...counts, unannotated, warnings } };
    process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : `${formatReviewReport(report)}\n`);
    process.stderr.write(
      `imported ${incoming.length} reviews from ${tasks} tasks in ${files.length} file(s) into ${REVIEWS_KEY} of ${store.describe()}: ` +
        `${merged.added} new, ${merged.replaced} replaced, ${merged.unchanged} unchanged, ${merged.older} older than stored; ` +
        `${warnings.length} warning(s)${unannotated ? `, ${unannotated} tasks not annotated yet` : ''}\n`,
    );
    return result;
  });
}
