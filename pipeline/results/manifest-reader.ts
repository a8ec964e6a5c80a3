/**
 * The one reader of a run's manifest, whatever form the merge stored it in: manifest.jsonl, line
 * by line, or, where the run skipped JSONL, its Parquet shards (manifest/part-*.parquet) one row
 * group at a time. Each row is checked against ManifestRow and numbered (its line, or its row
 * across the shards), so a manifest of millions of rows never sits in memory. `cascade verify`,
 * `status`-side readers and every export read manifests through here.
 */
import { MANIFEST_TABLE } from './manifest-parquet.js';
import { ManifestRow } from './manifest.js';
import { isManifestShardKey, MANIFEST_KEY, MANIFEST_SHARDS_PREFIX } from './output-layout.js';
import { readParquetRows } from './parquet-table.js';
import { compareKeys, isObjectNotFound, ObjectNotFoundError, type ObjectStore, readLines } from '../storage/object-store.js';

/** One non-blank manifest line (or Parquet row): a valid row, or the key it names (when readable) and why it is not a row. */
export type ManifestLine = { line: number; row: ManifestRow } | { line: number; row: null; key: string | null; message: string };

/** Checks one decoded row (`line` is its 1-based number); never throws. */
function checkRow(json: unknown, line: number, where = ''): ManifestLine {
  const parsed = ManifestRow.safeParse(json);
  if (parsed.success) return { line, row: parsed.data };
  const key = typeof (json as { key?: unknown } | null)?.key === 'string' ? (json as { key: string }).key : null;
  const message = parsed.error.issues.map((i) => `${i.path.join('.') || '(row)'}: ${i.message}`).join('; ');
  return { line, row: null, key, message: `${where}${message}` };
}

/** Parses one manifest line (`line` is its 1-based number); never throws. */
export function parseManifestLine(text: string, line: number): ManifestLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { line, row: null, key: null, message: `not JSON: ${(err as Error).message}` };
  }
  return checkRow(json, line);
}

/** The manifest lines of `lines` (the text of manifest.jsonl, line by line), blank lines skipped but counted. */
export async function* readManifestRows(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<ManifestLine> {
  let n = 0;
  for await (const text of lines) {
    n++;
    if (text.trim() !== '') yield parseManifestLine(text, n);
  }
}

/**
 * The rows of Parquet manifest shards in the order given, numbered across them. A file that is
 * not a manifest shard throws (ParquetTableError, naming it); a row that is not a manifest row
 * is an invalid line naming its shard.
 */
export async function* readManifestShards(store: ObjectStore, keys: readonly string[]): AsyncGenerator<ManifestLine> {
  let n = 0;
  // One shard read ahead: its bytes arrive while the one before is decoded.
  let next = keys.length > 0 ? store.get(keys[0]!) : null;
  for (let i = 0; i < keys.length; i++) {
    const bytes = await next!;
    next = i + 1 < keys.length ? store.get(keys[i + 1]!) : null;
    next?.catch(() => undefined);
    for await (const row of readParquetRows(bytes, MANIFEST_TABLE, `${keys[i]} in ${store.describe()}`)) yield checkRow(row, ++n, `${keys[i]}: `);
  }
}

/** The manifest shards under a run's output location, in shard order (empty when the run wrote none). */
export async function listManifestShards(store: ObjectStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const { key } of store.list(MANIFEST_SHARDS_PREFIX)) if (isManifestShardKey(key)) keys.push(key);
  return keys.sort(compareKeys);
}

/** A run's stored manifest: which form it was read from, and its rows. */
export interface StoredManifest {
  /** `manifest.jsonl`, or `manifest/` for the Parquet shards. */
  form: typeof MANIFEST_KEY | typeof MANIFEST_SHARDS_PREFIX;
  entries: AsyncIterable<ManifestLine>;
}

/**
 * The manifest of the run whose output `store` holds: manifest.jsonl where the merge wrote it,
 * else its Parquet shards. ObjectNotFoundError (before any row) when it has neither.
 */
export async function readStoredManifest(store: ObjectStore): Promise<StoredManifest> {
  try {
    const input = await store.getStream(MANIFEST_KEY);
    return { form: MANIFEST_KEY, entries: readManifestRows(readLines(input)) };
  } catch (err) {
    if (!isObjectNotFound(err)) throw err;
    const shards = await listManifestShards(store).catch((listErr: unknown) => {
      throw isObjectNotFound(listErr) ? err : listErr;
    });
    if (shards.length === 0)
      throw new ObjectNotFoundError(`${MANIFEST_KEY} in ${store.describe()}`, `nor any ${MANIFEST_SHARDS_PREFIX}part-*.parquet`, { cause: err });
    return { form: MANIFEST_SHARDS_PREFIX, entries: readManifestShards(store, shards) };
  }
}

/** The output location holds no merged run. */
export class RunOutputNotFoundError extends Error {
  override name = 'RunOutputNotFoundError';
}

/** The error for a location without a merged run's output. */
export function noRunOutput(store: ObjectStore, cause: unknown): RunOutputNotFoundError {
  return new RunOutputNotFoundError(`no manifest.jsonl or ${MANIFEST_SHARDS_PREFIX}*.parquet in ${store.describe()}: is the run finished and merged?`, {
    cause,
  });
}

/**
 * Opens the run's manifest (JSONL or Parquet shards): a missing one is a RunOutputNotFoundError
 * here, then its rows are streamed in manifest order (an invalid row throws, naming its line).
 */
export async function openManifest(store: ObjectStore): Promise<AsyncIterable<ManifestRow>> {
  const { form, entries } = await readStoredManifest(store).catch((err: unknown) => {
    throw isObjectNotFound(err) ? noRunOutput(store, err) : err;
  });
  const unit = form === MANIFEST_KEY ? 'line' : 'row';
  return (async function* () {
    for await (const r of entries) {
      if (r.row === null) throw new Error(`${form} ${unit} ${r.line} is not a manifest row: ${r.message}`);
      yield r.row;
    }
  })();
}
