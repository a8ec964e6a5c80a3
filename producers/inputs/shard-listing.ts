/**
 * A sharded source (tar shards, Parquet files) listed from a shard cursor: the shards in order
 * (shard-names.ts), each one's inputs by its format, every input with the cursor just after it
 * (`{kind: 'shard', shard, name, sample}`, producers/listing-cursor.ts). Resuming skips the
 * shards before the cursor's unread (or, where repeats are dropped across shards, reads them
 * again only for the refs they listed) and the cursor's shard's first `sample` inputs, so the
 * same inputs follow, with the same refs, as in one listing from the start.
 */
import { CascadeError } from '../../config/errors.js';
import type { ListingCursor } from '../listing-cursor.js';
import type { ListInputOptions } from './input-format.js';
import type { ListedInput } from './listed-input.js';
import { shardNames } from './shard-names.js';

/** A shard cursor (the kind this file writes). */
export type ShardCursor = Extract<ListingCursor, { kind: 'shard' }>;

/** How one sharded format lists one shard. */
export interface ShardLister {
  /** One shard's inputs in order, repeats dropped against `seen` (and added to it), each reported to `opts.onDuplicate`. */
  inputs(shard: string, opts: ListInputOptions, seen: Set<string>): AsyncIterable<ListedInput>;
  /** Repeats are dropped across shards (Parquet URL columns), not only within one: `seen` spans the source. */
  acrossShards: boolean;
}

/** A listing cursor as a shard cursor; another kind is a bug (or a changed source) refused in one line. */
function shardCursorOf(source: string, cursor: ListingCursor | null): ShardCursor | null {
  if (cursor === null) return null;
  if (cursor.kind !== 'shard') throw new CascadeError(`source ${source} is sharded but its stored listing cursor is of kind ${cursor.kind}`);
  return cursor;
}

/** The inputs of sharded `source` after `cursor` (all from null), each with the cursor after it. */
export async function* listShardsFrom(
  source: string,
  opts: ListInputOptions,
  cursor: ListingCursor | null,
  lister: ShardLister,
): AsyncGenerator<ListedInput & { cursor: ShardCursor }> {
  const from = shardCursorOf(source, cursor);
  const seen = new Set<string>();
  let index = 0;
  for await (const shard of shardNames(source, { stores: opts.stores })) {
    const skip = from && index === from.shard ? from.sample : 0;
    if (from && index < from.shard) {
      // Read again only for the refs it listed: they are repeats if they come again.
      if (lister.acrossShards) for await (const _ of lister.inputs(shard, { ...opts, onDuplicate: undefined }, seen));
      index++;
      continue;
    }
    if (from && index === from.shard && shard !== from.name)
      throw new CascadeError(`source ${source}: shard ${index} is now ${shard}, not ${from.name} as when the run's listing stopped; its shard list changed`);
    let sample = 0;
    // Repeats before the cursor were counted by the listing that stopped there.
    const onDuplicate: ListInputOptions['onDuplicate'] = (ref, where) => {
      if (sample >= skip) opts.onDuplicate?.(ref, where);
    };
    for await (const input of lister.inputs(shard, { ...opts, onDuplicate }, lister.acrossShards ? seen : new Set())) {
      sample++;
      if (sample > skip) yield { ...input, cursor: { kind: 'shard', shard: index, name: shard, sample } };
    }
    // A shard removed after all of it was listed cannot be told from one that shrank: refused, not guessed.
    if (sample < skip) throw new CascadeError(`source ${source}: shard ${shard} now holds ${sample} inputs, fewer than the ${skip} already listed; it changed`);
    index++;
  }
  if (from && index <= from.shard)
    throw new CascadeError(`source ${source} now names ${index} shards, fewer than when the run's listing stopped in shard ${from.shard} (${from.name})`);
}

/** A listing without its cursors (a whole listing from the start). */
export async function* withoutCursors(listing: AsyncIterable<ListedInput & { cursor: ShardCursor }>): AsyncGenerator<ListedInput> {
  for await (const { cursor: _cursor, ...input } of listing) yield input;
}
