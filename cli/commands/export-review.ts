/**
 * `cascade export review`: write the images of a finished run that deserve a human look as
 * Label Studio tasks or CSV, from the run's output location (directory or s3://…), to `--out` (a
 * file or s3:// object, written whole or not at all) or stdout; with `--budget K`, a random slice
 * plus the likeliest wrong, K in all (docs/reviews.md).
 */
import { ConfigError } from '../../config/load-config.js';
import type { AuditEntry } from '../../pipeline/audit/audit-part.js';
import { RunSummary } from '../../pipeline/results/manifest.js';
import { SUMMARY_KEY } from '../../pipeline/results/output-layout.js';
import { openManifest, RunOutputNotFoundError } from '../../pipeline/results/manifest-reader.js';
import { labelStudioTasks, parseReasons, readDisagreements, reviewCsv, selectForReview, selectWithinBudget } from '../../pipeline/results/review-export.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../../pipeline/storage/object-store.js';
import { withEnvStores } from '../run-output.js';
import { writeExport } from '../export-output.js';

/** The formats `cascade export review --format` writes; the first is the default. */
export const REVIEW_EXPORT_FORMATS = ['label-studio', 'csv'] as const;

export interface ExportReviewOptions {
  run: string;
  format: (typeof REVIEW_EXPORT_FORMATS)[number];
  out?: string;
  maxConfidence: number;
  include: string;
  localFilesRoot?: string;
  /** At most this many images: a random slice plus the likeliest wrong. */
  budget?: number;
  /** The random slice's share of the budget (default 0.5). */
  randomShare?: number;
}

/** The run id from summary.json; null when the run has none (tasks then carry no `run`). */
async function runIdOf(store: ObjectStore): Promise<string | null> {
  try {
    return (await readJson(store, SUMMARY_KEY, RunSummary)).runId;
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
}

/** Select and write the review set; returns how many images were exported. */
export async function exportReviewCommand(o: ExportReviewOptions): Promise<number> {
  return withEnvStores(async (stores) => {
    const store = stores.open(o.run);
    const include = (() => {
      try {
        return parseReasons(o.include);
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
    })();
    // The audit parts first, then the manifest opened and streamed: an open stream left idle
    // while thousands of audit parts are read could time out.
    const opened = (async () => {
      const disagreements = include.has('disagreements') ? await readDisagreements(store) : new Map<string, AuditEntry>();
      const runId = await runIdOf(store);
      return { disagreements, runId, manifest: await openManifest(store) };
    })();
    const { disagreements, runId, manifest } = await opened.catch((err: unknown) => {
      // A wrong --run is a usage problem: one line and exit code 2, no stack.
      throw err instanceof RunOutputNotFoundError ? new ConfigError(err.message) : err;
    });
    if (o.budget !== undefined && runId === null) throw new ConfigError(`--budget needs the run's summary.json, and ${store.describe()} has none`);
    const { items, rows } =
      o.budget === undefined
        ? await selectForReview(manifest, disagreements, { include, maxConfidence: o.maxConfidence })
        : await selectWithinBudget(manifest, disagreements, { budget: o.budget, randomShare: o.randomShare ?? 0.5, runId: runId!, include });
    const tasks = labelStudioTasks(items, { localFilesRoot: o.localFilesRoot, ...(runId ? { runId } : {}) });
    const body = o.format === 'csv' ? reviewCsv(items) : `${JSON.stringify(tasks, null, 2)}\n`;
    await writeExport(o.out, [body], stores);
    const counts = ['random', 'errors', 'disagreements', 'low-confidence']
      .filter((r) => r !== 'random' || o.budget !== undefined)
      .map((r) => `${items.filter((i) => i.reasons.includes(r as never)).length} ${r}`)
      .join(', ');
    process.stderr.write(`exported ${items.length} of ${rows} images for review (${counts})${o.out ? ` to ${o.out}` : ''}\n`);
    return items.length;
  });
}
