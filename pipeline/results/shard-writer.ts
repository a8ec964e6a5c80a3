/**
 * The merge's writer of manifest shards (manifest/part-NNNNN.parquet): shards are handed over in
 * order as the merge's single pass fills them, encoded and put in the background, a bounded
 * number at once; at the end, shards an earlier merge of the location left beyond this one's
 * are removed, so the folder holds exactly this merge's manifest.
 */
import type { ManifestRow } from './manifest.js';
import { listManifestShards } from './manifest-reader.js';
import { manifestShardKey } from './output-layout.js';
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
  written = 0;

  /** `threads`: worker threads to encode on (1: the merge's own thread). */
  constructor(
    private readonly store: ObjectStore,
    private readonly concurrency: number,
    private readonly threads: number,
  ) {}

  /** Queues shard `written` with `rows`; resolves once a slot is free. */
  async add(rows: ManifestRow[]): Promise<void> {
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    this.rethrow();
    const key = manifestShardKey(this.written++);
    this.encoders ??= shardEncoders(this.threads);
    const task = this.encoders
      .encode(rows)
      .then((bytes) => this.store.put(key, bytes))
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  /** Waits for every shard (and stops the encoders), then removes shards an earlier merge of this location wrote beyond this one's. */
  async finish(): Promise<number> {
    await this.close();
    this.rethrow();
    const keep = new Set(Array.from({ length: this.written }, (_, i) => manifestShardKey(i)));
    for (const key of await listManifestShards(this.store)) if (!keep.has(key)) await this.store.delete(key);
    return this.written;
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
