/**
 * Turns a source string into the image refs of a run, in a deterministic order, so that the same
 * source always yields the same batches (and the same run id on resubmission).
 *
 * - a local folder: recursive walk, extension filter, UTF-8 byte order of the relative path;
 * - `s3://bucket/prefix` (or another store of the registry): the store's listing, in key order, extension filter;
 *   split into key ranges listed concurrently where the store can (pipeline/storage/split-listing.ts), same order;
 * - a key-list file (`.txt`/`.lst`/`.list`, local or on S3, or any file with `asList`): one ref
 *   per line in file order, no extension filter — the user chose each line. Lines are trimmed
 *   (CRLF or LF), blank lines and `#` comment lines skipped, and a ref that appears again
 *   (after normalising) is dropped and reported to `onDuplicate`, so each key yields one row;
 * - a SageMaker Ground Truth manifest (`.manifest`, local or on S3): JSON Lines, one object a
 *   line whose `source-ref` is the ref (other fields, such as an output manifest's labels, are
 *   ignored); blank lines are skipped, and a line that is not a JSON object with a string
 *   `source-ref` stops the listing with an error naming `<file>:<line>`. Refs and repeats are
 *   handled as in a key list;
 * - a single local image file: just that ref.
 *
 * Refs are normalised the same way whatever the source: local refs are absolute, normalised
 * paths (`.`, `..` and doubled slashes folded; symlinks kept as written); S3 refs are
 * `s3://bucket/key` with the key as data. Folder and remote listings cannot repeat a ref.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CascadeError } from '../config/errors.js';
import { DEFAULT_LISTING_SPLIT, type ListingSplit } from '../config/schema.js';
import { walkFiles } from '../pipeline/storage/local-store.js';
import { isForbiddenPath } from '../pipeline/storage/local-roots.js';
import { expectedUrls, formatRemoteUrl, parseRef, type Ref, type RemoteUrl, storeLabel } from '../pipeline/storage/location.js';
import { isObjectNotFound, type ObjectInfo, readLines } from '../pipeline/storage/object-store.js';
import { canSplit, discoverSplits, listSplit } from '../pipeline/storage/split-listing.js';
import type { Stores } from '../pipeline/storage/stores.js';
import type { ListedRef, ListingCursor } from './listing-cursor.js';

/** Keys in a full listing page (S3's MaxKeys cap): a split's read-ahead is counted in these. */
const S3_PAGE_KEYS = 1000;

/** Split discovery looks a level further down while it has found fewer than this many splits per concurrent listing. */
const SPLITS_PER_LISTING = 4;

/** File name extensions that mark a key-list file. */
export const LIST_FILE_EXTENSIONS: readonly string[] = ['.txt', '.lst', '.list'];

/** File name extension of a SageMaker Ground Truth manifest (JSON Lines with `source-ref`). */
export const GROUND_TRUTH_MANIFEST_EXTENSION = '.manifest';

export interface ListSourceOptions {
  /** Image extensions to keep (case-insensitive, with or without the dot); empty keeps every file. */
  extensions: readonly string[];
  /** The process's stores; needed only when the source is remote (s3://...). */
  stores?: Stores;
  /** Read the source as a key-list file whatever its name. */
  asList?: boolean;
  /** Remote listing page size (S3 MaxKeys, capped at 1000 by S3); smaller pages only exercise pagination. */
  pageSize?: number;
  /** How a remote prefix is split and listed concurrently (config `sources.list*`); absent: DEFAULT_LISTING_SPLIT. */
  split?: ListingSplit;
  /**
   * Called for each key-list line whose ref was already yielded (the line is dropped); `where`
   * is `<list>:<line>`. The count of these calls is the run's dropped duplicates.
   */
  onDuplicate?: (ref: string, where: string) => void;
}

/**
 * The local roots a one-process `cascade run` of `source` may read images from when its config
 * names none (`sources.localRoots`): the folder itself, a key-list file's folder, or a single
 * image file itself; none for an S3 source. Pure: a source that is neither a list file (by its
 * extension) nor an S3 URL is taken as written, folder or image. `cwd` resolves relative sources.
 */
export function defaultLocalRoots(source: string, opts: { asList?: boolean; cwd?: string } = {}): string[] {
  const ref = parseRef(source);
  if (ref.kind !== 'local' || ref.path.trim() === '') return [];
  const abs = path.resolve(opts.cwd ?? process.cwd(), ref.path);
  return [opts.asList || isListFile(abs) ? path.dirname(abs) : abs];
}

/** The source (folder, list file, prefix or bucket) does not exist. */
export class SourceNotFoundError extends CascadeError {
  readonly code = 'SOURCE_NOT_FOUND';
  override name = 'SourceNotFoundError';
  /** `detail` says what was missing, when more precise than "not found". */
  constructor(
    readonly source: string,
    detail?: string,
    options?: ErrorOptions,
  ) {
    super(`Source not found: ${source}${detail ? ` (${detail})` : ''}`, options);
  }
}

/** Yields the image refs of `source` in a deterministic order (see the module comment). */
export async function* listSource(source: string, opts: ListSourceOptions): AsyncGenerator<string> {
  for await (const listed of listSourceFrom(source, opts, null)) yield listed.ref;
}

/**
 * Yields the refs of `source` after `cursor` (from the start when null), each with the cursor
 * just after it: listing again from any yielded cursor continues with exactly the refs that
 * followed it (producers/listing-cursor.ts). A cursor of another kind of source is refused.
 */
export async function* listSourceFrom(source: string, opts: ListSourceOptions, cursor: ListingCursor | null): AsyncGenerator<ListedRef> {
  if (typeof source !== 'string' || source.trim() === '') throw new Error(`Empty source: expected a folder, a key-list file or ${expectedUrls('prefix')}`);
  const keep = extensionFilter(opts.extensions);
  const ref = parseRef(source);
  if (ref.kind === 'remote') {
    yield* listRemoteSource(source, ref, opts, keep, cursor);
    return;
  }
  if (ref.kind === 'unsupported') {
    throw new Error(`Unsupported source ${JSON.stringify(source)}: scheme "${ref.scheme}://" (expected a local path or ${expectedUrls('prefix')})`);
  }
  const abs = path.resolve(ref.path);
  let st: Awaited<ReturnType<typeof fs.stat>>;
  try {
    st = await fs.stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new SourceNotFoundError(source, abs === source ? undefined : abs, { cause: err });
    throw err;
  }
  if (st.isDirectory()) {
    const after = cursorOf(source, cursor, 'folder')?.after;
    for await (const f of walkFiles(abs, { after })) if (keep(f.rel)) yield { ref: f.abs, cursor: { kind: 'folder', after: f.rel } };
    return;
  }
  if (!st.isFile()) throw new Error(`Source ${source} is neither a folder nor a regular file`);
  if (opts.asList || isListFile(abs)) {
    const from = cursorOf(source, cursor, 'key-list')?.line ?? 0;
    yield* readListLines(createReadStream(abs), abs, lineReader(abs), (line) => path.resolve(path.dirname(abs), line), from, opts.onDuplicate);
    return;
  }
  if (keep(abs)) {
    if (!cursorOf(source, cursor, 'single')) yield { ref: abs, cursor: { kind: 'single' } };
    return;
  }
  throw new Error(
    `Source ${source} is a file but neither a key-list file (${LIST_FILE_EXTENSIONS.join(', ')}), a Ground Truth manifest (${GROUND_TRUTH_MANIFEST_EXTENSION}) nor an image ` +
      `(${opts.extensions.join(', ')}); use a folder, a key-list file or ${expectedUrls('prefix')}`,
  );
}

/** `cursor` as the kind this source lists with (null at the start); a stored cursor of another kind means the source changed. */
function cursorOf<K extends ListingCursor['kind']>(source: string, cursor: ListingCursor | null, kind: K): Extract<ListingCursor, { kind: K }> | null {
  if (cursor === null) return null;
  if (cursor.kind !== kind)
    throw new Error(`Source ${source} lists as ${kind}, but the run's stored listing cursor is a ${cursor.kind} cursor: the source changed kind`);
  return cursor as Extract<ListingCursor, { kind: K }>;
}

async function* listRemoteSource(
  source: string,
  url: RemoteUrl,
  opts: ListSourceOptions,
  keep: (name: string) => boolean,
  cursor: ListingCursor | null,
): AsyncGenerator<ListedRef> {
  const { scheme, bucket, key } = url;
  const label = storeLabel(scheme);
  if (!opts.stores) throw new Error(`Source ${source} is on ${label} but no ${label} client was configured`);
  const root = opts.stores.open({ kind: 'remote', scheme, bucket, prefix: '' }, { pageSize: opts.pageSize });
  if (key !== '' && !key.endsWith('/') && (opts.asList || isListFile(key))) {
    const from = cursorOf(source, cursor, 'key-list')?.line ?? 0;
    const body = await root.getStream(key).catch((err: unknown) => {
      throw isObjectNotFound(err) ? new SourceNotFoundError(source, undefined, { cause: err }) : err;
    });
    const dir = key.slice(0, key.lastIndexOf('/') + 1);
    // Relative lines of a remote list are keys next to it: keys are data, no '..' folding.
    yield* readListLines(body, source, lineReader(key), (line) => formatRemoteUrl({ scheme, bucket, key: dir + line }), from, opts.onDuplicate);
    return;
  }
  // Folder semantics, as for local sources: s3://b/photos must not pick up photos2/...
  const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  const stored = cursorOf(source, cursor, 'prefix');
  const after = stored?.after;
  const split = opts.split ?? DEFAULT_LISTING_SPLIT;
  let objects = 0;
  try {
    // Split or not, the keys come in the same order: the cursor's `after` resumes either listing.
    let keys: AsyncIterable<ObjectInfo>;
    let splits: string[] | undefined;
    if (split.concurrency > 1 && canSplit(root)) {
      // Each level down costs a request per folder: worth it only while too few ranges keep the listings busy.
      const enough = SPLITS_PER_LISTING * split.concurrency;
      splits = stored?.splits ?? (await discoverSplits(root, prefix, { splits: split.splits, enough, concurrency: split.concurrency }));
      keys = listSplit(root, prefix, splits, after, { concurrency: split.concurrency, aheadKeys: split.pagesAhead * (opts.pageSize ?? S3_PAGE_KEYS) });
    } else {
      keys = root.list(prefix, { after });
    }
    for await (const obj of keys) {
      objects++;
      if (!obj.key.endsWith('/') && keep(obj.key)) {
        const ref = formatRemoteUrl({ scheme, bucket, key: obj.key });
        yield { ref, cursor: splits ? { kind: 'prefix', after: obj.key, splits } : { kind: 'prefix', after: obj.key } };
      }
    }
  } catch (err) {
    if (isObjectNotFound(err)) throw new SourceNotFoundError(source, `bucket "${bucket}" does not exist`, { cause: err });
    throw err;
  }
  // Object stores have no folders: a prefix with no objects is how a mistyped one looks (a resumed listing may simply be at its end).
  if (objects === 0 && after === undefined) throw new SourceNotFoundError(source, `no objects under ${formatRemoteUrl({ scheme, bucket, key: prefix })}`);
}

/** The written ref of one trimmed, non-blank line, or null for a line that holds none (a comment); throws naming `where`. */
type LineReader = (line: string, where: string) => string | null;

/** A key-list line is the ref itself; `#` starts a comment line. */
const keyListLine: LineReader = (line) => (line.startsWith('#') ? null : line);

/**
 * A Ground Truth manifest line is a JSON object whose `source-ref` is the ref. Anything else
 * (not JSON, not an object, no `source-ref`, a text `source` object) is an error, never a skipped line.
 */
const groundTruthLine: LineReader = (line, where) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw new Error(`${where}: not a JSON object (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${where}: not a JSON object`);
  const ref = (parsed as Record<string, unknown>)['source-ref'];
  if (typeof ref === 'string' && ref.trim() !== '') return ref.trim();
  if (ref !== undefined) throw new Error(`${where}: "source-ref" is not a non-empty string`);
  if ('source' in parsed) throw new Error(`${where}: a text object ("source"), not an image ("source-ref")`);
  throw new Error(`${where}: no "source-ref"`);
};

function lineReader(name: string): LineReader {
  return path.posix.extname(name).toLowerCase() === GROUND_TRUTH_MANIFEST_EXTENSION ? groundTruthLine : keyListLine;
}

/**
 * Parses a key-list or manifest stream: trimmed lines, blank lines skipped, each line's ref
 * taken by `readLine`, resolved by `relative`, and yielded once (later repeats go to
 * `onDuplicate`). The set of refs seen is held in memory: about 100 bytes a line plus the key.
 * Lines up to `from` (a resumed listing's cursor) are read only to know the refs already listed.
 */
async function* readListLines(
  input: Readable,
  name: string,
  readLine: LineReader,
  relative: (line: string) => string,
  from: number,
  onDuplicate?: (ref: string, where: string) => void,
): AsyncGenerator<ListedRef> {
  const seen = new Set<string>();
  let n = 0;
  for await (const raw of readLines(input)) {
    n++;
    const trimmed = (n === 1 ? raw.replace(/^\uFEFF/, '') : raw).trim();
    if (trimmed === '') continue;
    const where = `${name}:${n}`;
    const line = readLine(trimmed, where);
    if (line === null) continue;
    const ref = parseListLine(line, where, relative);
    if (seen.has(ref)) {
      if (n > from) onDuplicate?.(ref, where);
      continue;
    }
    seen.add(ref);
    if (n > from) yield { ref, cursor: { kind: 'key-list', line: n } };
  }
}

function parseListLine(line: string, where: string, relative: (line: string) => string): string {
  if (line.includes('\0')) throw new Error(`${where}: the ref contains a NUL character`);
  let ref: Ref;
  try {
    ref = parseRef(line);
  } catch (err) {
    // A remote key with a '..' segment is listed like a local path that leaves its roots: it becomes
    // a `forbidden` row when read (before any network call), so the rest of the list still runs.
    if (isForbiddenPath(err)) return line.replace(/^[a-z][a-z0-9+.-]*:/i, (scheme) => scheme.toLowerCase());
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  switch (ref.kind) {
    case 'remote':
      if (ref.key === '' || ref.key.endsWith('/')) throw new Error(`${where}: ${JSON.stringify(line)} is an ${storeLabel(ref.scheme)} prefix, not an object`);
      // S3:// and s3:// name the same object; the key itself is data and stays as written.
      return formatRemoteUrl(ref);
    case 'unsupported':
      throw new Error(`${where}: unsupported ref ${JSON.stringify(line)} (expected a path or ${expectedUrls('key')})`);
    case 'local':
      // Normalised, not checked: a path that leaves the allowed roots becomes a `forbidden` row when read.
      return path.isAbsolute(ref.path) ? path.resolve(ref.path) : relative(ref.path);
  }
}

function isListFile(name: string): boolean {
  const ext = path.extname(name).toLowerCase();
  return LIST_FILE_EXTENSIONS.includes(ext) || ext === GROUND_TRUTH_MANIFEST_EXTENSION;
}

function extensionFilter(extensions: readonly string[]): (name: string) => boolean {
  if (extensions.length === 0) return () => true;
  const set = new Set(extensions.map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase()));
  return (name) => set.has(path.posix.extname(name).toLowerCase());
}
