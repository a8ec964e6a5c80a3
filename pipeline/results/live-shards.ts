/**
 * Manifest shards written while the run still labels: a shard (a range of batches,
 * output-layout.ts `shardBatchRange`) is written once its batches are listed and every part of
 * their chains is counted, with its partial summary (manifest-shard.ts), so the final merge
 * folds it instead of reading and encoding it again. Safe to run beside another pass or the
 * final merge: a shard's bytes and record depend only on its counted parts, and a shard counts as
 * written only once its record, put after it, is there.
 */
import type { OutputSettings } from '../../config/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ManifestRow } from './manifest.js';
import {
  batchRows,
  type CountedParts,
  emptyShardSummary,
  foldAudits,
  foldBatch,
  readShardBatches,
  ShardNotReadyError,
  type ShardSummary,
} from './manifest-shard.js';
import { batchesPerShard, MANIFEST_SHARD_SUMMARIES_PREFIX, shardBatchRange, shardCount, shardSummaryIndex } from './output-layout.js';
import { ShardWriter } from './shard-writer.js';

/** What a pass needs of a run: its id, stages, batch size, output settings, whether it audits, and how far it is listed. */
export interface LiveShardRun {
  runId: string;
  stages: readonly string[];
  batchSize: number;
  output: OutputSettings;
  audits: boolean;
  /** Batches listed so far, and whether the listing is complete (only then is the last, short shard known). */
  batches: number;
  listed: boolean;
}

/** One pass's outcome: shards it wrote, shards it could not read (an error, not a part still to come), and whether every shard is now written. */
export interface LiveShardPass {
  written: number[];
  failed: Array<{ shard: number; error: unknown }>;
  complete: boolean;
}

/**
 * Whether a run of `batches` batches has shards to write while it labels: Parquet on and more
 * than one shard (a lone shard is the final merge's, as it would be read right before it anyway).
 */
export function writesShardsLive(output: OutputSettings, batchSize: number, batches: number): boolean {
  return output.parquet && shardCount(batches, batchesPerShard(output.shardRows, batchSize)) > 1;
}

/** Shards whose record is in the output location. */
async function writtenShards(store: ObjectStore): Promise<Set<number>> {
  const done = new Set<number>();
  for await (const { key } of store.list(MANIFEST_SHARD_SUMMARIES_PREFIX)) {
    const index = shardSummaryIndex(key);
    if (index !== null) done.add(index);
  }
  return done;
}

/**
 * Writes every shard that is ready and not yet written (up to `output.shardConcurrency` encoded
 * and put at once). `counted` reads which parts of a range are counted (the run tracker);
 * `assertOwner` runs before each put and throws once another run took the output over;
 * `skip`: shards not to try (ones that failed before in this process).
 */
export async function writeReadyShards(
  store: ObjectStore,
  run: LiveShardRun,
  o: { counted: (range: { from: number; to: number }) => CountedParts; assertOwner: () => Promise<void>; skip?: ReadonlySet<number> },
): Promise<LiveShardPass> {
  const pass: LiveShardPass = { written: [], failed: [], complete: false };
  if (!run.output.parquet) return { ...pass, complete: true };
  const perShard = batchesPerShard(run.output.shardRows, run.batchSize);
  const known = run.listed ? shardCount(run.batches, perShard) : Math.floor(run.batches / perShard);
  const done = await writtenShards(store);
  const todo = Array.from({ length: known }, (_, i) => i).filter((i) => !done.has(i) && !o.skip?.has(i));
  if (todo.length === 0) return { ...pass, complete: run.listed };
  await o.assertOwner();
  const shards = new ShardWriter(store, run.output.shardConcurrency, Math.min(run.output.shardConcurrency, todo.length));
  try {
    for (const index of todo) {
      const range = shardBatchRange(index, perShard, run.batches);
      const counted = o.counted(range);
      // The cheap look first: every first-stage part of the range counted (one range of a bitmap).
      const firstStage = await counted('stage', 0);
      let ready = true;
      for (let b = range.from; b < range.to && ready; b++) ready = firstStage(b);
      if (!ready) continue;
      let read: { rows: ManifestRow[]; summary: ShardSummary };
      try {
        read = await readShard(store, run, range, counted);
      } catch (error) {
        if (!(error instanceof ShardNotReadyError)) pass.failed.push({ shard: index, error });
        continue;
      }
      await shards.add(read.rows, { runId: run.runId, shard: index, ...range, rows: read.rows.length, summary: read.summary }, o.assertOwner);
      pass.written.push(index);
    }
    await shards.drain();
  } finally {
    await shards.close();
  }
  pass.complete = run.listed && done.size + pass.written.length >= shardCount(run.batches, perShard);
  return pass;
}

/** One shard's rows and partial summary, reading only counted parts (ShardNotReadyError otherwise). */
async function readShard(store: ObjectStore, run: LiveShardRun, range: { from: number; to: number }, counted: CountedParts) {
  const summary = emptyShardSummary(run.stages);
  const rows: ManifestRow[] = [];
  const audited: number[] = [];
  for await (const batch of readShardBatches(store, run.runId, range, counted)) {
    const batchRowsOf = batchRows(batch);
    foldBatch(summary, batch, batchRowsOf);
    if (batch.parts[0]!.audits) audited.push(batch.batch);
    for (const row of batchRowsOf) rows.push(row);
  }
  if (run.audits) await foldAudits(store, summary, audited, counted);
  return { rows, summary };
}
