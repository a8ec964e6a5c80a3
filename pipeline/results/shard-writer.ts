/**
 * The writer of manifest shards (manifest/part-NNNNN.parquet): shards are handed over as their
 * batches are read (by the merge, or while the run labels), encoded and put in the background, a
 * bounded number at once, each followed by its record (the partial summary): a shard counts as
 * written only once its record is. At the end of a merge, shards and records an earlier merge of
 * the location left beyond this one's are removed, so the folder holds exactly this manifest.
 */
import type { ManifestRow } from './manifest.js';
import { listManifestShards } from './manifest-reader.js';
import type { ShardRecord } from './manifest-shard.js';
import { MANIFEST_SHARD_SUMMARIES_PREFIX, manifestShardKey, manifestShardSummaryKey, shardSummaryIndex } from './output-layout.js';
import { type ShardEncoders, shardEncoders } from './shard-encoders.js';
import type { ObjectStore } from '../storage/object-store.js';

/**
 * Writes manifest shards as the merge fills them: each is encoded (on a worker thread when there
 * are several) and put while later batches are read, at most `concurrency` shards at once; a
 * full window makes the merge wait, so memory stays bounded by the window, not the run.
 */
export class ShardWriter {
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { err: unknown } | null = null;
  private encoders: ShardEncoders | null = null;

  /** `threads`: worker threads to encode on (1: the merge's own thread). */
  constructor(
    private readonly store: ObjectStore,
    private readonly concurrency: number,
    private readonly threads: number,
  ) {}

  /**
   * Queues shard `record.shard` with `rows`; resolves once a slot is free. `beforePut` runs
   * before the shard's puts (a writer while the run labels checks it still owns the output).
   */
  async add(rows: ManifestRow[], record: ShardRecord, beforePut?: () => Promise<void>): Promise<void> {
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    this.rethrow();
    this.encoders ??= shardEncoders(this.threads);
    const task = this.encoders
      .encode(rows)
      .then(async (bytes) => {
        await beforePut?.();
        await this.store.put(manifestShardKey(record.shard), bytes);
        await this.store.put(manifestShardSummaryKey(record.shard), JSON.stringify(record));
      })
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  /** Waits for every shard (and stops the encoders), then removes shards and records an earlier merge of this location wrote beyond the run's `count`. */
  async finish(count: number): Promise<void> {
    await this.close();
    this.rethrow();
    const keep = new Set(Array.from({ length: count }, (_, i) => manifestShardKey(i)));
    for (const key of await listManifestShards(this.store)) if (!keep.has(key)) await this.store.delete(key);
    const stale: string[] = [];
    for await (const { key } of this.store.list(MANIFEST_SHARD_SUMMARIES_PREFIX)) if ((shardSummaryIndex(key) ?? -1) >= count) stale.push(key);
    for (const key of stale) await this.store.delete(key);
  }

  /** Waits for the shards in flight and reports the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.inFlight);
    this.rethrow();
  }

  /** Waits for the shards in flight and stops the encoders' threads (also when the merge failed). */
  async close(): Promise<void> {
    await Promise.all(this.inFlight);
    await this.encoders?.close();
    this.encoders = null;
  }

  private rethrow(): void {
    if (this.failure) throw this.failure.err;
  }
}
