/**
 * Parquet files as an input format: `data/*.parquet`, `{a,b}.parquet` or one `.parquet`, as
 * img2dataset writes them. Either an image column holds each row's image bytes — a row is then a
 * sample `<file>#<key>` whose job item names its row and column, read back by a stage from the
 * file itself — or a URL column holds a ref per row, listed like a key list (relative refs resolve
 * against the file's folder, repeats dropped). Only the footer and the key or URL column (and, for
 * calibration, the label column) are read here, never the images. A file that is not Parquet, or lacks (or mistypes) a column the run
 * names, stops the listing with one line naming file and column; a missing file is one
 * `not-found` row.
 */
import path from 'node:path';
import type { InputColumns } from '../../config/schema.js';
import {
  checkColumn,
  columnNames,
  openParquet,
  ParquetInputError,
  type ParquetFile,
  readTextColumn,
  type RangeReader,
} from '../../pipeline/inputs/parquet-file.js';
import { classIndex, type ShardLabel } from '../../pipeline/inputs/sample-label.js';
import { sampleRef } from '../../pipeline/inputs/sample-locator.js';
import { fetchRange, fetchSize } from '../../pipeline/storage/fetch-image.js';
import { isForbiddenPath } from '../../pipeline/storage/local-roots.js';
import { formatRemoteUrl, parseRef } from '../../pipeline/storage/location.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { isObjectNotFound } from '../../pipeline/storage/object-store.js';
import { type InputFormat, type ListInputOptions, shardExtension, shardRoots, storesOf } from './input-format.js';
import type { ListedInput } from './listed-input.js';
import { listShardsFrom, type ShardLister, withoutCursors } from './shard-listing.js';
import { checkShardName, missingShard } from './webdataset.js';

/** Image-bytes columns looked for, in order, when the run names none (img2dataset writes `jpg`). */
export const IMAGE_COLUMNS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'image'];

/** What to read of a file: image bytes from `image`, or refs from `url`; keys from `key` (null: the row number). */
export type ParquetPlan = { image: string; key: string | null } | { url: string; key: string | null };

/** The columns to read from `file` under the run's `columns` (see InputColumns); a ParquetInputError when they are not there. */
export function planColumns(file: ParquetFile, columns: InputColumns = {}): ParquetPlan {
  const names = columnNames(file);
  if (columns.key) checkColumn(file, columns.key, 'key');
  const key = columns.key ?? (names.includes('key') ? 'key' : null);
  if (key && !columns.key) checkColumn(file, key, 'key');
  if (columns.url) {
    checkColumn(file, columns.url, 'text');
    return { url: columns.url, key };
  }
  const image = columns.image ?? IMAGE_COLUMNS.find((c) => names.includes(c));
  if (image) {
    checkColumn(file, image, 'bytes');
    return { image, key };
  }
  if (names.includes('url')) {
    checkColumn(file, 'url', 'text');
    return { url: 'url', key };
  }
  throw new ParquetInputError(
    `${file.ref} has no image column (${IMAGE_COLUMNS.join(', ')}) and no url column (columns: ${names.join(', ')}); name one with --image-column or --url-column`,
  );
}

function reader(file: string, opts: ListInputOptions): RangeReader {
  // Only a remote file needs the caller's stores: a local one is read from its path, and an
  // unconnected Stores never builds a client.
  const stores = parseRef(file).kind === 'remote' ? storesOf(opts, file) : new Stores();
  return { size: () => fetchSize(file, stores), range: (range) => fetchRange(file, range, stores) };
}

/** A URL cell as a ref: store URLs as written, local paths absolute (relative to the file's folder). */
function urlRef(value: string, file: string): string {
  let ref: ReturnType<typeof parseRef>;
  try {
    ref = parseRef(value);
  } catch (err) {
    // A `..` key becomes a `forbidden` row when read, as in a key list.
    if (isForbiddenPath(err)) return value;
    throw err;
  }
  if (ref.kind === 'remote') return formatRemoteUrl(ref);
  // An http(s) URL stays as written: its row says the scheme is not read.
  if (ref.kind === 'unsupported') return value;
  const fileRef = parseRef(file);
  if (path.isAbsolute(ref.path)) return path.resolve(ref.path);
  if (fileRef.kind === 'remote') return formatRemoteUrl({ ...fileRef, key: fileRef.key.slice(0, fileRef.key.lastIndexOf('/') + 1) + ref.path });
  return path.resolve(path.dirname(file), ref.path);
}

/** Each row's `{ label }` from `column` (an integer, or a string holding one); `{}` for every row without a column. */
async function labelColumn(file: ParquetFile, column: string | undefined): Promise<(row: number) => { label?: ShardLabel }> {
  if (column === undefined) return () => ({});
  checkColumn(file, column, 'key');
  const values = await readTextColumn(file, column);
  return (row) => ({ label: classIndex(values[row], `${file.ref} row ${row} column ${JSON.stringify(column)}`) });
}

/** One Parquet file's inputs in row order (a missing file: its one `not-found` row), repeats dropped against `seen`. */
async function* fileInputs(shard: string, opts: ListInputOptions, seen: Set<string>): AsyncGenerator<ListedInput> {
  checkShardName(shard);
  let file: ParquetFile;
  try {
    file = await openParquet(shard, reader(shard, opts));
  } catch (err) {
    if (!isObjectNotFound(err)) throw err;
    yield missingShard(shard, err);
    return;
  }
  const plan = planColumns(file, opts.columns);
  const keys = plan.key ? await readTextColumn(file, plan.key) : null;
  const keyOf = (row: number) => keys?.[row] ?? String(row);
  const labelOf = await labelColumn(file, opts.labels?.column);
  if ('image' in plan) {
    for (let row = 0; row < file.rows; row++) {
      const ref = sampleRef(shard, keyOf(row));
      if (seen.has(ref)) {
        opts.onDuplicate?.(ref, `${shard}:${row}`);
        continue;
      }
      seen.add(ref);
      yield { ref, at: { row, column: plan.image }, shard, ...labelOf(row) };
    }
    return;
  }
  const urls = await readTextColumn(file, plan.url);
  for (let row = 0; row < urls.length; row++) {
    const url = urls[row]?.trim();
    if (!url) {
      const message = `${shard}: row ${row} has no ${plan.url}`;
      yield { ref: sampleRef(shard, keyOf(row)), at: { unreadable: { kind: 'not-found', message } }, shard };
      continue;
    }
    const ref = urlRef(url, shard);
    if (seen.has(ref)) {
      opts.onDuplicate?.(ref, `${shard}:${row}`);
      continue;
    }
    seen.add(ref);
    yield { ref, shard, ...labelOf(row) };
  }
}

/** Parquet files by file: a URL column's refs may repeat in any later file, so repeats are dropped across the source. */
const parquetFiles: ShardLister = { inputs: fileInputs, acrossShards: true };

/** The inputs of every Parquet file `source` names, in file order then row order. */
export function listParquet(source: string, opts: ListInputOptions): AsyncGenerator<ListedInput> {
  return withoutCursors(listShardsFrom(source, opts, null, parquetFiles));
}

/** The Parquet row of the input formats: sources whose (expanded) names end in `.parquet`. */
export const parquet: InputFormat = {
  name: 'parquet',
  matches: (source) => shardExtension(source) === '.parquet',
  list: listParquet,
  listFrom: (source, opts, cursor) => listShardsFrom(source, opts, cursor, parquetFiles),
  localRoots: shardRoots,
};
