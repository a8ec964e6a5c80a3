/**
 * `cascade export ground-truth | imagefolder | label-studio-config`: a finished run's labels in
 * the formats labeling and training tools read (SageMaker Ground Truth output manifest, Hugging
 * Face imagefolder metadata.jsonl), and the Label Studio labeling config for the run's classes.
 * The run is read from its output location (directory or s3://…); the result goes to `--out`
 * (a file or s3:// object, written whole or not at all) or stdout, and one summary line goes to stderr.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { z } from 'zod';
import { ConfigError, loadModelSpec, s3SettingsFromEnv } from '../../config/load-config.js';
import { S3Settings } from '../../config/schema.js';
import { loadLabels } from '../../pipeline/models/labels.js';
import { defaultJobName, GroundTruthJobName, GroundTruthLabelAttribute, groundTruthRow } from '../../pipeline/results/ground-truth-export.js';
import { imagefolderRow, rootPrefix } from '../../pipeline/results/imagefolder-export.js';
import { labelStudioConfig } from '../../pipeline/results/label-studio-config.js';
import { RunSummary, type ManifestRow } from '../../pipeline/results/manifest.js';
import { openManifest, RunOutputNotFoundError } from '../../pipeline/results/review-export.js';
import { isS3Url } from '../../pipeline/storage/location.js';
import { makeS3Client, openStore } from '../../pipeline/storage/open-store.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../../pipeline/storage/object-store.js';
import { writeExport } from '../export-output.js';

/** Run `fn` with an S3 client built on first use from the environment's settings, destroyed after. */
async function withS3Client<T>(fn: (s3Client: () => S3Client) => Promise<T>): Promise<T> {
  let client: S3Client | undefined;
  try {
    return await fn(() => (client ??= makeS3Client(S3Settings.parse(s3SettingsFromEnv({}, process.env) ?? {}))));
  } finally {
    client?.destroy();
  }
}

/** Open the run's output location and run `fn` on it (with the S3 client factory, for --out). */
async function withRun<T>(run: string, fn: (store: ObjectStore, s3Client: () => S3Client) => Promise<T>): Promise<T> {
  return withS3Client(async (s3Client) => {
    try {
      return await fn(openStore(run, s3Client), s3Client);
    } catch (err) {
      // A wrong --run is a usage problem: one line and exit code 2, no stack.
      throw err instanceof RunOutputNotFoundError ? new ConfigError(err.message) : err;
    }
  });
}

/** The run's summary.json (run id, finish time); a missing one means the run is not merged. */
async function readSummary(store: ObjectStore): Promise<RunSummary> {
  return readJson(store, 'summary.json', RunSummary).catch((err: unknown) => {
    throw isObjectNotFound(err) ? new ConfigError(`no summary.json in ${store.describe()}: is the run finished and merged?`) : err;
  });
}

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
}

/** A labelled row whose source-ref would be a local path, which Ground Truth cannot read. */
export class LocalSourceRefError extends ConfigError {
  override name = 'LocalSourceRefError';
}

/** Write the run as a Ground Truth output manifest; returns the rows written and the error rows left out. */
export async function exportGroundTruthCommand(o: ExportGroundTruthOptions): Promise<{ rows: number; errors: number }> {
  const labelAttribute = parseOption(GroundTruthLabelAttribute, o.labelAttribute, '--label-attribute');
  const explicitJob = o.jobName === undefined ? undefined : parseOption(GroundTruthJobName, o.jobName, '--job-name');
  return withRun(o.run, async (store, s3Client) => {
    const summary = await readSummary(store);
    const manifest = await openManifest(store);
    const opts = { labelAttribute, jobName: explicitJob ?? defaultJobName(summary.runId), creationDate: new Date(summary.finishedAt) };
    const counts = { rows: 0, errors: 0 };
    await writeExport(
      o.out,
      (async function* () {
        for await (const row of manifest) {
          const line = groundTruthRow(row, opts);
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
      s3Client,
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
}

/** A manifest row whose image is not under the imagefolder root. */
export class OutsideRootError extends ConfigError {
  override name = 'OutsideRootError';
}

/** Write the run as an imagefolder metadata.jsonl; returns rows written, error rows and rows outside the root left out. */
export async function exportImagefolderCommand(o: ExportImagefolderOptions): Promise<{ rows: number; errors: number; outside: number }> {
  const prefix = rootPrefix(o.root);
  return withRun(o.run, async (store, s3Client) => {
    const manifest = await openManifest(store);
    const counts = { rows: 0, errors: 0, outside: 0 };
    await writeExport(
      o.out,
      (async function* () {
        for await (const row of manifest as AsyncIterable<ManifestRow>) {
          const r = imagefolderRow(row, prefix);
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
      s3Client,
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
  if ((o.labels === undefined) === (o.model === undefined))
    throw new ConfigError('give the label file with --labels or the model spec with --model (one of them)');
  let labelFile = o.labels;
  if (o.model !== undefined) {
    labelFile = (await loadModelSpec(o.model)).labels;
    if (labelFile === undefined) throw new ConfigError(`model spec ${o.model} names no label file (labels:)`);
  }
  const names = await loadLabels(labelFile as string).catch((err: Error & { code?: string }) => {
    throw new ConfigError(err.code === 'ENOENT' ? `label file not found: ${labelFile}` : `label file ${labelFile}: ${err.message}`);
  });
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
  await withS3Client((s3Client) => writeExport(o.out, [config.xml], s3Client));
  const shared = config.shared.map((s) => `${s.name} (${s.classes.join(', ')})`).join(', ');
  process.stderr.write(
    `wrote a Label Studio labeling config with ${config.choices} choices for ${names.length} classes${o.out ? ` to ${o.out}` : ''}` +
      `${shared ? `; names shared by several classes are one choice each: ${shared}` : ''}\n`,
  );
  return config.choices;
}
