/**
 * A stage's read of one sharded sample: the image bytes its locator names (sample-locator.ts),
 * under the same roots, limits and retries as a loose image (storage/fetch-image.ts). One row
 * per locator kind: a tar member is one ranged read; a Parquet cell is read through the file's
 * footer (kept per process in ParquetFiles) and offset index; a sample the listing found
 * unreadable throws its own error, which becomes its row.
 */
import { type FetchLimits, fetchRange, fetchRef, fetchSize } from '../storage/fetch-image.js';
import type { Stores } from '../storage/stores.js';
import { ObjectTooLargeError } from '../storage/object-store.js';
import { openParquet, type ParquetFile, readCells } from './parquet-file.js';
import { type SampleLocator, shardOf, UnreadableSample } from './sample-locator.js';

/** A sample the listing found unreadable (or a null Parquet cell): `kind` is its row's error kind. */
export class UnreadableSampleError extends Error {
  readonly code = 'UNREADABLE_SAMPLE';
  override name = 'UnreadableSampleError';
  /** `kind` and the message come from the listing's locator, or from the read. */
  constructor(readonly sample: UnreadableSample) {
    super(sample.message);
  }
}

/** The error kind an UnreadableSampleError carries, including one that lost its class crossing a thread; else null. */
export function unreadableKind(err: unknown): UnreadableSample['kind'] | null {
  const e = err as { code?: unknown; sample?: unknown } | null;
  if (e?.code !== 'UNREADABLE_SAMPLE') return null;
  const parsed = UnreadableSample.safeParse(e.sample);
  return parsed.success ? parsed.data.kind : null;
}

/** Rows read at once from a Parquet file: a batch's images are neighbours, and a page decoded once serves them all. */
export const PARQUET_READ_AHEAD = 32;

/**
 * The Parquet files a process has opened (footers only), the most recent `capacity` kept; their
 * recently read byte ranges up to `cacheBytes`, so the images of one batch share the reads of
 * their pages; and the cells of the last `spans` row spans read (PARQUET_READ_AHEAD rows each),
 * so a batch's images are decoded from their page once, not once per image.
 */
export class ParquetFiles {
  private readonly files = new Map<string, Promise<ParquetFile>>();
  private readonly slices = new Map<string, { bytes: number; data: Promise<Buffer> }>();
  private readonly rowSpans: Array<{ key: string; start: number; end: number; cells: Promise<Array<Buffer | null>> }> = [];
  private cached = 0;

  constructor(
    private readonly capacity = 8,
    private readonly cacheBytes = 32 * 1024 * 1024,
    private readonly spans = 8,
  ) {}

  /** The bytes in `column` of `row`, read with the rows after it unless a span read (or being read) holds it. */
  async cell(file: ParquetFile, column: string, row: number): Promise<Buffer | null> {
    const key = `${file.ref}\0${column}`;
    let span = this.rowSpans.find((s) => s.key === key && s.start <= row && row < s.end);
    if (!span) {
      const end = Math.min(row + PARQUET_READ_AHEAD, file.rows);
      span = { key, start: row, end, cells: readCells(file, column, row, end) };
      const added = span;
      // A failed read is not kept: the next image tries again.
      span.cells.catch(() => this.rowSpans.splice(this.rowSpans.indexOf(added) >>> 0, 1));
      this.rowSpans.push(span);
      if (this.rowSpans.length > this.spans) this.rowSpans.shift();
    }
    return (await span.cells)[row - span.start] ?? null;
  }

  /** The opened file `ref`, read through `stores` under `limits` (roots, retries; no byte limit: a footer or page may exceed an image's). */
  open(ref: string, stores: Stores, limits: FetchLimits): Promise<ParquetFile> {
    let file = this.files.get(ref);
    if (!file) {
      const rangeLimits = { localRoots: limits.localRoots, retryForMs: limits.retryForMs };
      file = openParquet(ref, {
        size: () => fetchSize(ref, stores, rangeLimits),
        range: (range) => this.slice(`${ref}\0${range.offset}+${range.length}`, range.length, () => fetchRange(ref, range, stores, rangeLimits)),
      });
      // A failed open is not kept: the next read tries again.
      file.catch(() => this.files.delete(ref));
      this.files.set(ref, file);
      if (this.files.size > this.capacity) this.files.delete(this.files.keys().next().value!);
    }
    return file;
  }

  private slice(key: string, bytes: number, read: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.slices.get(key);
    if (hit) return hit.data;
    const data = read();
    data.catch(() => this.forget(key));
    this.slices.set(key, { bytes, data });
    this.cached += bytes;
    while (this.cached > this.cacheBytes && this.slices.size > 1) this.forget(this.slices.keys().next().value!);
    return data;
  }

  private forget(key: string): void {
    const entry = this.slices.get(key);
    if (!entry) return;
    this.slices.delete(key);
    this.cached -= entry.bytes;
  }
}

export interface SampleReadDeps {
  stores: Stores;
  limits: FetchLimits;
  parquet: ParquetFiles;
}

/** The image bytes of sample `ref` at `at` (see the module comment). */
export async function readSample(ref: string, at: SampleLocator, deps: SampleReadDeps): Promise<Buffer> {
  if ('unreadable' in at) throw new UnreadableSampleError(at.unreadable);
  const shard = shardOf(ref);
  if ('offset' in at) return fetchRange(shard, at, deps.stores, deps.limits);
  const file = await deps.parquet.open(shard, deps.stores, deps.limits);
  const bytes = await deps.parquet.cell(file, at.column, at.row);
  if (bytes === null) throw new UnreadableSampleError({ kind: 'decode', message: `${ref}: column ${JSON.stringify(at.column)} is null in row ${at.row}` });
  if (deps.limits.maxBytes !== undefined && bytes.length > deps.limits.maxBytes) throw new ObjectTooLargeError(ref, bytes.length, deps.limits.maxBytes);
  return bytes;
}

/** The image bytes of one listed input, as every reader of inputs reads them: a sharded sample at its locator, a loose image by its ref. */
export function readInput(ref: string, at: SampleLocator | undefined, deps: SampleReadDeps): Promise<Buffer> {
  return at ? readSample(ref, at, deps) : fetchRef(ref, deps.stores, deps.limits);
}
