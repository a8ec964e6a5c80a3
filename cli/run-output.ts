/**
 * What the commands that read a finished run's output location share: an S3 client built on
 * first use from the environment, the location opened (directory or s3://…) with a usage error
 * for one that holds no run, and its summary.json.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { ConfigError, s3SettingsFromEnv } from '../config/load-config.js';
import { S3Settings } from '../config/schema.js';
import { RunSummary } from '../pipeline/results/manifest.js';
import { SUMMARY_KEY } from '../pipeline/results/output-layout.js';
import { RunOutputNotFoundError } from '../pipeline/results/review-export.js';
import { makeS3Client, openStore } from '../pipeline/storage/open-store.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';

/** Run `fn` with an S3 client built on first use from the environment's settings, destroyed after. */
export async function withS3Client<T>(fn: (s3Client: () => S3Client) => Promise<T>): Promise<T> {
  let client: S3Client | undefined;
  try {
    return await fn(() => (client ??= makeS3Client(S3Settings.parse(s3SettingsFromEnv({}, process.env) ?? {}))));
  } finally {
    client?.destroy();
  }
}

/** Open the run's output location and run `fn` on it (with the S3 client factory, for --out). */
export async function withRun<T>(run: string, fn: (store: ObjectStore, s3Client: () => S3Client) => Promise<T>): Promise<T> {
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
export async function readSummary(store: ObjectStore): Promise<RunSummary> {
  return readJson(store, SUMMARY_KEY, RunSummary).catch((err: unknown) => {
    throw isObjectNotFound(err) ? new ConfigError(`no summary.json in ${store.describe()}: is the run finished and merged?`) : err;
  });
}
