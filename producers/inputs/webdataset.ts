/**
 * WebDataset tar shards as an input format: `shards/{000000..000999}.tar`, `s3://b/shards/*.tar`
 * or one `.tar`. Each shard is read once, as a stream, to find its samples (pipeline/inputs/
 * tar-samples.ts); a sample's ref is `<shard>#<sampleKey>` and its job item carries the image
 * member's offset and length, so stages read just those bytes (and, for calibration, the label of
 * its `.cls` or `.json` member). A shard that is missing becomes one
 * `not-found` row (`<shard>#@0`); a sample key repeated within a shard is listed once (onDuplicate).
 */
import type { Readable } from 'node:stream';
import { CascadeError } from '../../config/errors.js';
import { sampleRef } from '../../pipeline/inputs/sample-locator.js';
import { tarSamples } from '../../pipeline/inputs/tar-samples.js';
import { openLocalStream } from '../../pipeline/storage/local-store.js';
import { parseRef } from '../../pipeline/storage/location.js';
import { isObjectNotFound } from '../../pipeline/storage/object-store.js';
import { defaultLocalRoots } from '../list-source.js';
import { type InputFormat, type ListInputOptions, shardExtension, shardRoots, storesOf } from './input-format.js';
import type { ListedInput } from './listed-input.js';
import { isPattern } from './shard-names.js';
import { listShardsFrom, type ShardLister, withoutCursors } from './shard-listing.js';

/** Refuses a shard whose name has a `#`: a sample ref splits at its first `#`. */
export function checkShardName(shard: string): void {
  if (shard.includes('#'))
    throw new CascadeError(`shard ${JSON.stringify(shard)} has a '#' in its name: sample refs are <shard>#<sampleKey>; rename the shard`);
}

/** The row of a shard that is not there: one `not-found` input standing for all its samples. */
export function missingShard(shard: string, err: unknown): ListedInput {
  return { ref: sampleRef(shard, '@0'), at: { unreadable: { kind: 'not-found', message: (err as Error).message } }, shard };
}

async function openShard(shard: string, opts: ListInputOptions): Promise<Readable> {
  const ref = parseRef(shard);
  if (ref.kind === 'remote') return storesOf(opts, shard).open({ kind: 'remote', scheme: ref.scheme, bucket: ref.bucket, prefix: '' }).getStream(ref.key);
  if (ref.kind === 'unsupported') throw new Error(`unsupported shard ${JSON.stringify(shard)}`);
  return openLocalStream(ref.path);
}

/** One shard's samples in member order (a missing shard: its one `not-found` row); a key repeated within it is listed once. */
async function* shardSamples(shard: string, opts: ListInputOptions, seen: Set<string>): AsyncGenerator<ListedInput> {
  checkShardName(shard);
  let stream: Readable;
  try {
    stream = await openShard(shard, opts);
  } catch (err) {
    if (!isObjectNotFound(err)) throw err;
    yield missingShard(shard, err);
    return;
  }
  for await (const sample of tarSamples(stream, shard, { labels: opts.labels !== undefined })) {
    const ref = sampleRef(shard, sample.key);
    if (seen.has(ref)) {
      opts.onDuplicate?.(ref, shard);
      continue;
    }
    seen.add(ref);
    yield { ref, at: sample.at, shard, ...(sample.label ? { label: sample.label } : {}) };
  }
}

/** Tar shards by shard: a sample ref names its shard, so repeats are only ever within one. */
const tarShards: ShardLister = { inputs: shardSamples, acrossShards: false };

/** The samples of every shard `source` names, in shard order then member order. */
export function listWebDataset(source: string, opts: ListInputOptions): AsyncGenerator<ListedInput> {
  return withoutCursors(listShardsFrom(source, opts, null, tarShards));
}

/** The WebDataset row of the input formats: sources whose (expanded) names end in `.tar`. */
export const webDataset: InputFormat = {
  name: 'webdataset',
  matches: (source) => shardExtension(source) === '.tar',
  list: listWebDataset,
  listFrom: (source, opts, cursor) => listShardsFrom(source, opts, cursor, tarShards),
  localRoots: (source, opts) => (isPattern(source) ? shardRoots(source, opts) : defaultLocalRoots(source, opts)),
};
