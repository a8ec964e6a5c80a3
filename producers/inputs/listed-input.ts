/**
 * What an input format's listing yields: one input (a loose image's ref, or a sharded sample's
 * `<shard>#<sampleKey>` with its place in the shard) and the shard it belongs to, so a batch
 * never spans two shards.
 */
import type { ShardLabel } from '../../pipeline/inputs/sample-label.js';
import type { SampleLocator } from '../../pipeline/inputs/sample-locator.js';

/** One listed input. */
export interface ListedInput {
  ref: string;
  /** Where a sharded sample's image is inside its shard. */
  at?: SampleLocator;
  /** The shard the input comes from; a batch closes where it changes. */
  shard?: string;
  /** The label the shard carries for it, when the listing was asked for labels (ListInputOptions.labels). */
  label?: ShardLabel;
}

/** A listing's entry as an input: a loose ref is just its ref. */
export function asListed(entry: string | ListedInput): ListedInput {
  return typeof entry === 'string' ? { ref: entry } : entry;
}

/** The refs of a listing (for the warm-up draw and verify, which need keys only). */
export async function* refsOf(entries: AsyncIterable<string | ListedInput>): AsyncGenerator<string> {
  for await (const e of entries) yield typeof e === 'string' ? e : e.ref;
}
