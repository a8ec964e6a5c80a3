/**
 * Worker-thread entry of the merge's shard encoders: one manifest shard's rows in, its Parquet
 * bytes out (moved, not copied). Encoding is the merge's heaviest step, so shards encode side by
 * side on several cores while the merge's own thread reads the next batches.
 */
import { Piscina } from 'piscina';
import type { ManifestRow } from './manifest.js';
import { MANIFEST_TABLE } from './manifest-parquet.js';
import { encodeParquet } from './parquet-table.js';

/** Encode one shard. */
export default function encodeShard(rows: ManifestRow[]) {
  // An own buffer (Buffer.concat may return a slice of Node's shared pool), moved to the merge's thread.
  return Piscina.move(new Uint8Array(encodeParquet(MANIFEST_TABLE, rows)));
}
