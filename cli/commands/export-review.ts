/**
 * `cascade export review`: write the images of a finished run that deserve a human look as
 * Label Studio tasks or CSV, from the run's output location (directory or s3://…), to `--out` (a
 * file or s3:// object, written whole or not at all) or stdout.
 */
import { ConfigError, s3SettingsFromEnv } from '../../config/load-config.js';
import { S3Settings } from '../../config/schema.js';
import { makeS3Client, openStore } from '../../pipeline/storage/open-store.js';
import type { AuditEntry } from '../../pipeline/audit/audit-part.js';
import {
  labelStudioTasks,
  openManifest,
  parseReasons,
  readDisagreements,
  reviewCsv,
  RunOutputNotFoundError,
  selectForReview,
} from '../../pipeline/results/review-export.js';
import type { S3Client } from '@aws-sdk/client-s3';
import { writeExport } from '../export-output.js';

export interface ExportReviewOptions {
  run: string;
  format: 'label-studio' | 'csv';
  out?: string;
  maxConfidence: number;
  include: string;
  localFilesRoot?: string;
}

/** Select and write the review set; returns how many images were exported. */
export async function exportReviewCommand(o: ExportReviewOptions): Promise<number> {
  let client: S3Client | undefined;
  const s3Client = () => (client ??= makeS3Client(S3Settings.parse(s3SettingsFromEnv({}, process.env) ?? {})));
  const store = openStore(o.run, s3Client);
  try {
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
      return { disagreements, manifest: await openManifest(store) };
    })();
    const { disagreements, manifest } = await opened.catch((err: unknown) => {
      // A wrong --run is a usage problem: one line and exit code 2, no stack.
      throw err instanceof RunOutputNotFoundError ? new ConfigError(err.message) : err;
    });
    const { items, rows } = await selectForReview(manifest, disagreements, { include, maxConfidence: o.maxConfidence });
    const body = o.format === 'csv' ? reviewCsv(items) : `${JSON.stringify(labelStudioTasks(items, { localFilesRoot: o.localFilesRoot }), null, 2)}\n`;
    await writeExport(o.out, [body], s3Client);
    const counts = ['errors', 'disagreements', 'low-confidence'].map((r) => `${items.filter((i) => i.reasons.includes(r as never)).length} ${r}`).join(', ');
    process.stderr.write(`exported ${items.length} of ${rows} images for review (${counts})${o.out ? ` to ${o.out}` : ''}\n`);
    return items.length;
  } finally {
    client?.destroy();
  }
}
