/**
 * `cascade export ground-truth | imagefolder | label-studio-config`: a finished run's labels in
 * the formats labeling and training tools read (SageMaker Ground Truth output manifest, Hugging
 * Face imagefolder metadata.jsonl), and the Label Studio labeling config for the run's classes.
 * The run is read from its output location (directory or s3://…); the result goes to `--out`
 * (a file or s3:// object, written whole or not at all) or stdout, and one summary line goes to stderr.
 */
import type { z } from 'zod';
import { ConfigError } from '../../config/load-config.js';
import { defaultJobName, GroundTruthJobName, GroundTruthLabelAttribute, groundTruthRow } from '../../pipeline/results/ground-truth-export.js';
import { imagefolderRow, rootPrefix } from '../../pipeline/results/imagefolder-export.js';
import { labelStudioConfig } from '../../pipeline/results/label-studio-config.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { reviewedRow } from '../../pipeline/reviews/final-manifest.js';
import type { ReviewRow } from '../../pipeline/reviews/review-row.js';
import { readReviews } from '../../pipeline/reviews/reviews-file.js';
import { isS3Url } from '../../pipeline/storage/location.js';
import type { ObjectStore } from '../../pipeline/storage/object-store.js';
import { loadClassNames } from '../class-names.js';
import { writeExport } from '../export-output.js';
import { readSummary, withEnvStores, withRun } from '../run-output.js';

function parseOption<S extends z.ZodType>(schema: S, value: string, flag: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`${flag} ${JSON.stringify(value)}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

export interface ExportGroundTruthOptions {
  run: string;
  out?: string;
  /** The label attribute name (default `label`). */
  labelAttribute: string;
  /** The job name in each row's metadata (default `cascade-<run id>`). */
  jobName?: string;
  /** Write rows whose image is not an s3:// URL (Ground Truth cannot read them) instead of failing. */
  allowLocalRefs?: boolean;
  /** Human labels from the run's reviews.jsonl win (`human-annotated: yes`). */
  withReviews?: boolean;
}

/** The run's reviews by key when asked for, else none. */
async function reviewsOf(store: ObjectStore, wanted: boolean | undefined): Promise<Map<string, ReviewRow>> {
  return new Map(wanted ? (await readReviews(store)).map((r) => [r.key, r]) : []);
}

/** A labelled row whose source-ref would be a local path, which Ground Truth cannot read. */
export class LocalSourceRefError extends ConfigError {
  override name = 'LocalSourceRefError';
}

/** Write the run as a Ground Truth output manifest; returns the rows written and the error rows left out. */
export async function exportGroundTruthCommand(o: ExportGroundTruthOptions): Promise<{ rows: number; errors: number }> {
  const labelAttribute = parseOption(GroundTruthLabelAttribute, o.labelAttribute, '--label-attribute');
  const explicitJob = o.jobName === undefined ? undefined : parseOption(GroundTruthJobName, o.jobName, '--job-name');
  return withRun(o.run, async (store, stores) => {
    const summary = await readSummary(store);
    const reviews = await reviewsOf(store, o.withReviews);
    const manifest = await openManifest(store);
    const opts = { labelAttribute, jobName: explicitJob ?? defaultJobName(summary.runId), creationDate: new Date(summary.finishedAt) };
    const counts = { rows: 0, errors: 0 };
    await writeExport(
      o.out,
      (async function* () {
        for await (const row of manifest) {
          const review = reviews.get(row.key);
          const line = groundTruthRow(reviewedRow(row, review), opts, review !== undefined);
          if (line === null) {
            counts.errors++;
            continue;
          }
          if (!o.allowLocalRefs && !isS3Url(row.key))
            throw new LocalSourceRefError(
              `${row.key} is not an s3:// URL, and Ground Truth reads source-ref only from S3; ` +
                'label images under s3://, or pass --allow-local-refs to write local paths anyway',
            );
          counts.rows++;
          yield `${JSON.stringify(line)}\n`;
        }
      })(),
      stores,
    );
    process.stderr.write(
      `exported ${counts.rows} rows as a Ground Truth output manifest (job ${opts.jobName}, attribute ${labelAttribute})${o.out ? ` to ${o.out}` : ''}; ` +
        `${counts.errors} error rows left out\n`,
    );
    return counts;
  });
}

export interface ExportImagefolderOptions {
  run: string;
  /** The dataset root: the folder or s3:// prefix metadata.jsonl belongs in; file_name is relative to it. */
  root: string;
  out?: string;
  /** Leave rows whose image is outside the root out (counted) instead of failing. */
  skipOutside?: boolean;
  /** Human labels from the run's reviews.jsonl win (stage `human`, confidence 1). */
  withReviews?: boolean;
}

/** A manifest row whose image is not under the imagefolder root. */
export class OutsideRootError extends ConfigError {
  override name = 'OutsideRootError';
}

/** Write the run as an imagefolder metadata.jsonl; returns rows written, error rows and rows outside the root left out. */
export async function exportImagefolderCommand(o: ExportImagefolderOptions): Promise<{ rows: number; errors: number; outside: number }> {
  const prefix = rootPrefix(o.root);
  return withRun(o.run, async (store, stores) => {
    const reviews = await reviewsOf(store, o.withReviews);
    const manifest = await openManifest(store);
    const counts = { rows: 0, errors: 0, outside: 0 };
    await writeExport(
      o.out,
      (async function* () {
        for await (const row of manifest as AsyncIterable<ManifestRow>) {
          const r = imagefolderRow(reviewedRow(row, reviews.get(row.key)), prefix);
          if (r.kind === 'row') {
            counts.rows++;
            yield `${JSON.stringify(r.row)}\n`;
          } else if (r.kind === 'error') counts.errors++;
          else if (o.skipOutside) counts.outside++;
          else
            throw new OutsideRootError(
              `${row.key} is not under --root ${prefix}, so it has no file_name relative to it; ` +
                'choose the folder or prefix holding every image, or pass --skip-outside to leave such rows out',
            );
        }
      })(),
      stores,
    );
    process.stderr.write(
      `exported ${counts.rows} rows as imagefolder metadata (file_name relative to ${prefix})${o.out ? ` to ${o.out}` : ''}; ` +
        `${counts.errors} error rows${o.skipOutside ? ` and ${counts.outside} rows outside the root` : ''} left out\n`,
    );
    return counts;
  });
}

export interface ExportLabelStudioConfigOptions {
  /** A label file (imagenet_class_index.json, one name a line, …). */
  labels?: string;
  /** Or the model spec whose `labels:` the run used (its last stage). */
  model?: string;
  /** A run to check against: every class name in its manifest must be a choice. */
  run?: string;
  out?: string;
}

/** Write the Label Studio labeling config for the run's classes; returns the number of choices. */
export async function exportLabelStudioConfigCommand(o: ExportLabelStudioConfigOptions): Promise<number> {
  const { file: labelFile, names } = await loadClassNames(o);
  const config = (() => {
    try {
      return labelStudioConfig(names);
    } catch (err) {
      throw new ConfigError(`label file ${labelFile}: ${(err as Error).message}`);
    }
  })();
  if (o.run !== undefined) {
    const known = new Set(names);
    await withRun(o.run, async (store) => {
      for await (const row of await openManifest(store)) {
        if (row.labelName !== null && !known.has(row.labelName))
          throw new ConfigError(`${row.key} is labelled "${row.labelName}", which ${labelFile} does not name: is it the run's label file?`);
      }
    });
  }
  await withEnvStores((stores) => writeExport(o.out, [config.xml], stores));
  const shared = config.shared.map((s) => `${s.name} (${s.classes.join(', ')})`).join(', ');
  process.stderr.write(
    `wrote a Label Studio labeling config with ${config.choices} choices for ${names.length} classes${o.out ? ` to ${o.out}` : ''}` +
      `${shared ? `; names shared by several classes are one choice each: ${shared}` : ''}\n`,
  );
  return config.choices;
}
