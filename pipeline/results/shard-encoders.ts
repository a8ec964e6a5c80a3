/**
 * Where the merge encodes manifest shards: on its own thread (one at a time), or on a pool of
 * worker threads, one shard per thread, so a merge uses as many cores as it writes shards at once.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { threadEntry } from '../inference/thread-entry.js';
import type { ManifestRow } from './manifest.js';
import { MANIFEST_TABLE } from './manifest-parquet.js';
import { encodeParquet } from './parquet-table.js';

export interface ShardEncoders {
  /** One shard's Parquet bytes. */
  encode(rows: ManifestRow[]): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Encoders on up to `threads` worker threads, never more than the cores the merge's own thread
 * leaves free (`cores`, default this machine's): on a 2-core machine threads only contend, and
 * measured slower there (each new thread also starts with a cold JIT). 1 or fewer encodes on
 * the calling thread, with no pool to start.
 */
export function shardEncoders(threads: number, cores = availableParallelism()): ShardEncoders {
  const usable = Math.min(threads, cores - 1);
  if (usable <= 1) return { encode: async (rows) => encodeParquet(MANIFEST_TABLE, rows), close: async () => undefined };
  const { filename, workerData } = threadEntry('./shard-encode-thread', import.meta.url);
  const pool = new Piscina({ filename, workerData, minThreads: 1, maxThreads: usable, concurrentTasksPerWorker: 1 });
  return {
    encode: async (rows) => {
      const bytes = (await pool.run(rows)) as Uint8Array;
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    close: () => pool.destroy(),
  };
}
