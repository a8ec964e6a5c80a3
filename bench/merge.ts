/**
 * Merge time by manifest form: a generated finished run (two stages, 4% error rows, a quarter of
 * the images forwarded) of N rows in a local folder, merged as manifest.jsonl alone, as Parquet
 * shards alone (encoded on worker threads, and on the merge's own thread), and as both (the
 * default below the JSONL threshold). Modes interleave round by
 * round; each figure is the median over rounds. The parts are generated once per size and not
 * timed. The "after live shards" modes time the final merge of a run whose shards were all
 * written while it labelled (pipeline/results/live-shards.ts; that pass is not timed), against
 * the same manifest form merged all at the end.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_OUTPUT, type OutputSettings } from '../config/schema.js';
import { writeReadyShards } from '../pipeline/results/live-shards.js';
import { mergeRun } from '../pipeline/results/merge-run.js';
import { MANIFEST_KEY, MANIFEST_SHARD_SUMMARIES_PREFIX, MANIFEST_SHARDS_PREFIX } from '../pipeline/results/output-layout.js';
import { LocalStore } from '../pipeline/storage/local-store.js';
import { writeGeneratedRun } from '../test/helpers/generated-parts.js';
import { median } from './stats.js';

/** The manifest forms compared, by the output settings that give them. */
export const MERGE_MODES: ReadonlyArray<{ name: string; output: Partial<OutputSettings>; live?: true }> = [
  { name: 'jsonl', output: { jsonl: 'always', parquet: false } },
  { name: 'parquet', output: { jsonl: 'never' } },
  { name: 'parquet, encoded in place', output: { jsonl: 'never', shardConcurrency: 1 } },
  { name: 'jsonl + parquet', output: { jsonl: 'always' } },
  { name: 'parquet, after live shards', output: { jsonl: 'never' }, live: true },
  { name: 'jsonl + parquet, after live shards', output: { jsonl: 'always' }, live: true },
];

/** Removes the shards and their records, so the next merge writes every shard itself. */
async function clearShards(store: LocalStore): Promise<void> {
  for (const prefix of [MANIFEST_SHARDS_PREFIX, MANIFEST_SHARD_SUMMARIES_PREFIX]) {
    const keys: string[] = [];
    for await (const { key } of store.list(prefix)) keys.push(key);
    for (const key of keys) await store.delete(key);
  }
}

export interface MergeBenchRow {
  rows: number;
  mode: string;
  seconds: number;
  /** CPU seconds of the merge's process (user + system, all threads). */
  cpuSeconds: number;
  rowsPerSecond: number;
  /** Bytes of manifest.jsonl plus the shards. */
  manifestMb: number;
  shards: number;
}

async function manifestBytes(root: string): Promise<number> {
  const jsonl = await stat(join(root, MANIFEST_KEY)).then(
    (s) => s.size,
    () => 0,
  );
  const shards = await readdir(join(root, 'manifest')).catch(() => [] as string[]);
  let total = jsonl;
  for (const f of shards) total += (await stat(join(root, 'manifest', f))).size;
  return total;
}

/** Merge runs of each size in `rows` (batches of `batchSize`) in every mode, `rounds` times. */
export async function mergeBench(o: { rows: number[]; batchSize: number; rounds: number; log: (line: string) => void }): Promise<MergeBenchRow[]> {
  const results: MergeBenchRow[] = [];
  for (const n of o.rows) {
    const root = await mkdtemp(join(tmpdir(), 'cascade-bench-merge-'));
    try {
      const store = new LocalStore(root);
      const batches = Math.ceil(n / o.batchSize);
      o.log(`generating ${batches} batches of ${o.batchSize} (${batches * o.batchSize} rows) in ${root}`);
      const input = await writeGeneratedRun(store, { runId: 'bench-merge', batches, batchSize: o.batchSize });
      const times = new Map(MERGE_MODES.map((m) => [m.name, [] as number[]]));
      // CPU seconds of this process (the merge thread and its encoder threads) beside the wall time.
      const cpuTimes = new Map(MERGE_MODES.map((m) => [m.name, [] as number[]]));
      const outputs = new Map<string, { bytes: number; shards: number }>();
      for (let round = 0; round < o.rounds; round++) {
        for (const mode of MERGE_MODES) {
          const output = { ...DEFAULT_OUTPUT, ...mode.output };
          await clearShards(store);
          if (mode.live) {
            const stages = input.stages.map((s) => s.name);
            const live = { runId: input.runId, stages, batchSize: o.batchSize, output, audits: false, batches, listed: true };
            const pass = await writeReadyShards(store, live, { counted: () => async () => () => true, assertOwner: async () => undefined });
            if (!pass.complete) throw new Error('the live pass left shards unwritten');
          }
          const started = performance.now();
          const cpu = process.cpuUsage();
          const { summary } = await mergeRun(store, { ...input, output });
          const seconds = (performance.now() - started) / 1000;
          const used = process.cpuUsage(cpu);
          cpuTimes.get(mode.name)!.push((used.user + used.system) / 1e6);
          times.get(mode.name)!.push(seconds);
          outputs.set(mode.name, { bytes: await manifestBytes(root), shards: summary.manifest?.parquetShards ?? 0 });
          o.log(`  ${n} rows, ${mode.name}, round ${round + 1}: ${seconds.toFixed(2)} s`);
        }
      }
      for (const mode of MERGE_MODES) {
        const seconds = median(times.get(mode.name)!);
        const out = outputs.get(mode.name)!;
        results.push({
          rows: batches * o.batchSize,
          mode: mode.name,
          seconds,
          cpuSeconds: median(cpuTimes.get(mode.name)!),
          rowsPerSecond: (batches * o.batchSize) / seconds,
          manifestMb: out.bytes / 1e6,
          shards: out.shards,
        });
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
  return results;
}
