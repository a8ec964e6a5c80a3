/**
 * A submitter in its own OS process, so a test can kill -9 it mid-listing: it lists a run's
 * source slowly (a pause before each ref) and queues one batch per addBulk, printing
 * `listed <images>` after each, so the kill lands between two saved cursors.
 *
 * As a module: spawnSubmitter() starts `node --import tsx <this file> <job.json>`.
 * As a script: reads the job file, submits, prints "submitted: <listing>" and exits 0.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { RunSpec } from '../../queue/jobs.js';
import { spawnScript, type WorkerProcess } from './worker-process.js';

export interface SubmitterJob {
  redisUrl: string;
  prefix: string;
  spec: RunSpec;
  extensions: string[];
  window: number;
  /** Pause before each listed ref, ms. */
  delayMs: number;
}

const SELF = fileURLToPath(import.meta.url);

/** Starts a slow submitter of `job` (its job file is written into `dir`). */
export async function spawnSubmitter(dir: string, job: SubmitterJob): Promise<WorkerProcess> {
  const file = join(dir, `submit-${job.spec.runId}.json`);
  await writeFile(file, JSON.stringify(job));
  return spawnScript(SELF, [file]);
}

async function main(file: string): Promise<void> {
  const job = JSON.parse(await readFile(file, 'utf8')) as SubmitterJob;
  const { connectRedis } = await import('../../queue/redis-connection.js');
  const { RunTracker } = await import('../../queue/run-tracker.js');
  const { CascadeQueues } = await import('../../queue/cascade-queues.js');
  const { submitRun } = await import('../../producers/submit-run.js');
  const { resumableSource } = await import('../../producers/inputs/input-formats.js');
  const { Stores } = await import('../../pipeline/storage/stores.js');
  const redis = connectRedis(job.redisUrl);
  const stores = new Stores();
  const source = resumableSource({ source: job.spec.source, extensions: job.extensions }, stores);
  const slow = {
    plan: source.plan,
    async *open(...args: Parameters<typeof source.open>) {
      for await (const item of source.open(...args)) {
        await sleep(job.delayMs);
        yield item;
      }
    },
  };
  const queues = new CascadeQueues(redis, job.prefix);
  const result = await submitRun({
    spec: job.spec,
    refs: slow,
    window: job.window,
    tracker: new RunTracker(redis, job.prefix),
    queues,
    output: stores.open(job.spec.out),
    jobsPerBulk: 1,
    onListed: (n) => process.stdout.write(`listed ${n}\n`),
  });
  process.stdout.write(`submitted: ${result.listing}\n`);
  await queues.close();
  redis.disconnect();
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  main(process.argv[2]!).catch((err: Error) => {
    process.stderr.write(`submitter failed: ${err.message}\n`);
    process.exit(1);
  });
}
