/**
 * A live shard pass in its own OS process, so a test can kill -9 it mid-shard: it writes the
 * ready shards of a generated run in a local folder (every part counted), one at a time, each
 * put delayed so the kill lands between a shard's bytes and its record or inside an encode.
 *
 * As a module: spawnLiveShards() starts `node --import tsx <this file> <job.json>`.
 * As a script: reads the job file, runs one pass, prints "written <n>" and exits 0.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LiveShardRun } from '../../pipeline/results/live-shards.js';
import { spawnScript, type WorkerProcess } from './worker-process.js';

export interface LiveShardsJob {
  root: string;
  run: LiveShardRun;
  /** Pause before each put, ms. */
  putDelayMs: number;
}

const SELF = fileURLToPath(import.meta.url);

/** Starts a slow live shard pass of `job` (its job file is written into `dir`). */
export async function spawnLiveShards(dir: string, job: LiveShardsJob): Promise<WorkerProcess> {
  const file = join(dir, `live-shards-${job.run.runId}.json`);
  await writeFile(file, JSON.stringify(job));
  return spawnScript(SELF, [file]);
}

async function main(file: string): Promise<void> {
  const job = JSON.parse(await readFile(file, 'utf8')) as LiveShardsJob;
  const { LocalStore } = await import('../../pipeline/storage/local-store.js');
  const { writeReadyShards } = await import('../../pipeline/results/live-shards.js');
  const local = new LocalStore(job.root);
  const slow = Object.assign(Object.create(local) as typeof local, {
    put: async (key: string, body: Buffer | string) => {
      await sleep(job.putDelayMs);
      return local.put(key, body);
    },
  });
  const pass = await writeReadyShards(slow, job.run, { counted: () => async () => () => true, assertOwner: async () => undefined });
  process.stdout.write(`written ${pass.written.length}\n`);
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  main(process.argv[2]!).catch((err: Error) => {
    process.stderr.write(`live shards failed: ${err.message}\n`);
    process.exit(1);
  });
}
