/**
 * Where a run's listing stands, stored in Redis with the run (queue/run-tracker.ts keeps it as
 * opaque JSON), so that a listing cut off anywhere — a kill -9 of the submitter or of the
 * process topping the run up — resumes at exactly the next unlisted ref. One kind per source
 * kind; a new kind of source adds a row here and its resume in list-source.ts.
 */
import { z } from 'zod';
import { InputColumns, ListingSplit } from '../config/schema.js';
import type { ListedInput } from './inputs/listed-input.js';

export const ListingCursor = z.discriminatedUnion('kind', [
  /** A local folder: the relative path ('/'-separated) of the last file listed; the walk resumes after it in UTF-8 byte order. */
  z.object({ kind: z.literal('folder'), after: z.string().min(1) }).strict(),
  /**
   * A remote prefix (s3://, or another store of the registry): the key of the last object listed; the store lists after it (S3: StartAfter) in the same order.
   * `splits`: the split keys a split listing found (pipeline/storage/split-listing.ts), so a resumed listing need not look for them again; absent in a sequential listing's cursor.
   */
  z.object({ kind: z.literal('prefix'), after: z.string().min(1), splits: z.array(z.string().min(1)).max(4096).optional() }).strict(),
  /**
   * A key list or Ground Truth manifest: lines read so far. Repeats are dropped against the whole
   * list, so a resumed listing re-reads the lines before this one to know the refs already listed,
   * and yields from the next.
   */
  z.object({ kind: z.literal('key-list'), line: z.number().int().positive() }).strict(),
  /** A single image file: listed. */
  z.object({ kind: z.literal('single') }).strict(),
  /**
   * A sharded source (tar shards, Parquet files): `shard` is the index in its shard list (braces
   * expanded, globs listed, in order), `name` the shard there when it was listed (a listing whose
   * shard list changed is refused, not misnumbered), `sample` the inputs of that shard listed so
   * far (0: none, the shard's start). A resumed listing reads that shard again up to there (a tar
   * has no index) and yields from the next; the shards before it are not read.
   */
  z.object({ kind: z.literal('shard'), shard: z.number().int().nonnegative(), name: z.string().min(1), sample: z.number().int().nonnegative() }).strict(),
]);
export type ListingCursor = z.infer<typeof ListingCursor>;

/** One listed ref and the cursor just after it (resuming there lists the refs after this one). */
export interface ListedRef {
  ref: string;
  cursor: ListingCursor;
}

/** What a listing needs to be opened again by another process: the source, the run's extension filter, for Parquet the columns it reads, and how a remote prefix is split (absent: the defaults). */
export const ListingPlan = z
  .object({ source: z.string().min(1), extensions: z.array(z.string()), columns: InputColumns.optional(), split: ListingSplit.optional() })
  .strict();
export type ListingPlan = z.infer<typeof ListingPlan>;

/** A source a listing pass can open at a stored cursor, in any process that has `plan` (producers/inputs/input-formats.ts resumableSource). */
export interface ResumableSource {
  plan: ListingPlan;
  /** The inputs after `cursor` (all from null), each with the cursor after it; `onDuplicate` is called per repeat dropped. */
  open(cursor: ListingCursor | null, onDuplicate: () => void): AsyncIterable<ListedInput & { cursor: ListingCursor }>;
}

/**
 * The cursor just before an input, given the one after it, where its kind can say so (a shard
 * cursor: one sample back; a shard's first input gives the shard's start), else null. A batch
 * cut where a new shard starts stands there, so the finished shards before it are never read again.
 */
export function cursorBefore(after: ListingCursor | null): ListingCursor | null {
  if (after?.kind !== 'shard' || after.sample === 0) return null;
  return { ...after, sample: after.sample - 1 };
}

/** The stored cursor text parsed; a cursor of an unknown kind (written by a newer version) is refused, not guessed. */
export function parseCursor(raw: string | null): ListingCursor | null {
  if (raw === null || raw === '') return null;
  const parsed = ListingCursor.safeParse(JSON.parse(raw));
  if (!parsed.success) throw new Error(`stored listing cursor ${raw.slice(0, 200)} is not one this version reads`);
  return parsed.data;
}
