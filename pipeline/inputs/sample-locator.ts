/**
 * Where a sample of a sharded input lives inside its shard, and how its ref is spelt. A sample's
 * ref (and its manifest row's key) is `<shard>#<sampleKey>`; the locator beside it in the job
 * says where the image bytes are, so any stage re-reads just those bytes (a ranged read of a tar
 * member, one row of a Parquet file) and Redis never holds image bytes. A listing that found a
 * sample it cannot read (no image member, a hostile name) says so in the locator: that sample
 * becomes an explicit error row, never a silent drop.
 */
import { z } from 'zod';
import { ImageErrorKind } from '../results/manifest.js';

/** The bytes of a tar member: `offset` of its data in the shard, `length` in bytes. */
export const TarMember = z.object({ offset: z.number().int().nonnegative(), length: z.number().int().nonnegative() }).strict();

/** One cell of a Parquet file: the `column` (image bytes) of row `row` (0-based, across row groups). */
export const ParquetCell = z.object({ row: z.number().int().nonnegative(), column: z.string().min(1) }).strict();

/** A sample the listing already knows to be unreadable: its row's error. */
export const UnreadableSample = z.object({ kind: ImageErrorKind, message: z.string() }).strict();
export type UnreadableSample = z.infer<typeof UnreadableSample>;

/** Where a sharded sample's image bytes are (a job item's `at`). */
export const SampleLocator = z.union([TarMember, ParquetCell, z.object({ unreadable: UnreadableSample }).strict()]);
export type SampleLocator = z.infer<typeof SampleLocator>;

/** The ref (and row key) of sample `sampleKey` of `shard`. */
export function sampleRef(shard: string, sampleKey: string): string {
  return `${shard}#${sampleKey}`;
}

/** The shard of a sample ref: up to its first `#` (shard names with a `#` are refused when listed). */
export function shardOf(ref: string): string {
  const cut = ref.indexOf('#');
  if (cut <= 0) throw new Error(`${JSON.stringify(ref)} is not a shard sample ref (<shard>#<sampleKey>)`);
  return ref.slice(0, cut);
}
