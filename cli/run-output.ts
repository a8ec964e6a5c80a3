/**
 * What the commands that read a finished run's output location share: the stores, their clients
 * built on first use from the environment, the location opened (directory or s3://…) with a usage error
 * for one that holds no run, and its summary.json.
 */
import { ConfigError, s3SettingsFromEnv } from '../config/load-config.js';
import { RunSummary } from '../pipeline/results/manifest.js';
import { SUMMARY_KEY } from '../pipeline/results/output-layout.js';
import { RunOutputNotFoundError } from '../pipeline/results/manifest-reader.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';
import { type Stores, withStores } from '../pipeline/storage/stores.js';

/** Run `fn` with stores whose clients are built on first use from the environment's settings, closed after. */
export async function withEnvStores<T>(fn: (stores: Stores) => Promise<T>, env: NodeJS.ProcessEnv = process.env): Promise<T> {
  return withStores({ s3: s3SettingsFromEnv({}, env) }, fn);
}

/** Open the run's output location and run `fn` on it (with the stores, for --out). */
export async function withRun<T>(run: string, fn: (store: ObjectStore, stores: Stores) => Promise<T>): Promise<T> {
  return withEnvStores(async (stores) => {
    try {
      return await fn(stores.open(run), stores);
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
