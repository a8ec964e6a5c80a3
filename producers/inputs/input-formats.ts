/**
 * The input formats, as a table: the first row whose `matches` takes a source lists it. A new
 * format is a file (producers/inputs/<format>.ts) and a row here.
 */
import type { InputFormat, ListInputOptions } from './input-format.js';
import type { ListedInput } from './listed-input.js';
import type { Stores } from '../../pipeline/storage/stores.js';
import { type ResumableSource, resumableSource } from '../run-listing.js';
import { loose } from './loose.js';
import { parquet } from './parquet.js';
import { webDataset } from './webdataset.js';

/** Tried in order; loose takes whatever the others do not. */
export const INPUT_FORMATS: readonly InputFormat[] = [webDataset, parquet, loose];

/** The format of `source`. */
export function inputFormatOf(source: string): InputFormat {
  return INPUT_FORMATS.find((f) => f.matches(source)) ?? loose;
}

/** The inputs of `source` in a deterministic order, by its format's listing. */
export async function* listInputs(source: string, opts: ListInputOptions): AsyncGenerator<string | ListedInput> {
  if (typeof source !== 'string' || source.trim() === '') throw new Error('Empty source: expected a folder, a key-list file, shards or s3://bucket/prefix');
  yield* inputFormatOf(source).list(source, opts);
}

/** The local roots a one-process `cascade run` of `source` may read when its config names none. */
export function inputLocalRoots(source: string, opts: { asList?: boolean; cwd?: string } = {}): string[] {
  return inputFormatOf(source).localRoots(source, opts);
}

/**
 * What a submission lists `source` from: a loose source resumable (the run keeps a window of
 * batches in flight, its cursor in Redis); a sharded one as its inputs, listed whole at
 * submission (a shard cursor, shard index and sample, is not written yet).
 */
export function submissionSource(
  source: string,
  opts: ListInputOptions & { stores: Stores; onDuplicate: () => void },
): ResumableSource | AsyncIterable<string | ListedInput> {
  if (inputFormatOf(source) === loose)
    return resumableSource({ source, extensions: [...opts.extensions], ...(opts.split ? { split: opts.split } : {}) }, opts.stores);
  return listInputs(source, opts);
}
