/**
 * Where a run's listing stands, in words for `cascade status` and the dashboard: its stored
 * cursor (producers/listing-cursor.ts) read back, with the shard count where the source's name
 * alone gives it. A cursor this version cannot read is said so, not guessed at.
 */
import type { DescribeListing } from '../queue/run-view.js';
import { namedShardCount } from './inputs/shard-names.js';
import { type ListingCursor, ListingPlan, parseCursor } from './listing-cursor.js';

/** Keys and paths longer than this are cut to their last characters: the end says where the listing is. */
const MAX_KEY_CHARS = 60;

/** A number with thousands separators (`2,000`). */
function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** A key or path on one short line: control characters shown as `?`, a long one cut to its end after `…`. */
function shortKey(key: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const line = key.replace(/[\u0000-\u001f\u007f]/g, '?');
  return line.length > MAX_KEY_CHARS ? `…${line.slice(-(MAX_KEY_CHARS - 1))}` : line;
}

/** A cursor in words, e.g. `shard 12 of 2,000 (000011.tar), 40 samples in`; `shards` null: the count is left out. Null for a single image. */
export function describeCursor(c: ListingCursor, shards: number | null): string | null {
  switch (c.kind) {
    case 'shard': {
      const name = c.name.slice(c.name.lastIndexOf('/') + 1);
      return `shard ${count(c.shard + 1)}${shards === null ? '' : ` of ${count(shards)}`} (${shortKey(name)}), ${count(c.sample)} samples in`;
    }
    case 'prefix':
      return `after key ${shortKey(c.after)}`;
    case 'folder':
      return `after file ${shortKey(c.after)}`;
    case 'key-list':
      return `line ${count(c.line)}`;
    case 'single':
      return null;
  }
}

/** How many shards the stored plan's source names (namedShardCount); null when its name alone does not say or cannot be read. */
function plannedShards(plan: string | null): number | null {
  if (plan === null) return null;
  try {
    const p = ListingPlan.safeParse(JSON.parse(plan));
    return p.success ? namedShardCount(p.data.source) : null;
  } catch {
    // A plan or source this version cannot read (its listing would say so) names no count.
    return null;
  }
}

/** The run hash's cursor and listing plan (JSON) in words (see describeCursor); the shard count only when the plan's source names its shards without a glob. */
export const describeListing: DescribeListing = (cursor, plan) => {
  let c: ListingCursor | null;
  try {
    c = parseCursor(cursor);
  } catch {
    return 'at a cursor this version does not read';
  }
  return c === null ? null : describeCursor(c, c.kind === 'shard' ? plannedShards(plan) : null);
};
