/**
 * A Parquet file read through ranged reads (hyparquet): its footer, the columns a run names
 * checked against its schema, one column whole (keys or URLs, at listing) or one cell (a
 * sample's image bytes, in a stage). A stage reads a cell with the file's offset index where it
 * has one, so it fetches the page that holds the row, not the whole column chunk. Problems with
 * the file itself (not Parquet, a missing or mistyped column) throw a one-line ParquetInputError.
 */
import { type AsyncBuffer, type FileMetaData, parquetMetadataAsync, parquetRead, parquetSchema } from 'hyparquet';
import { CascadeError } from '../../config/errors.js';
import type { ByteRange } from '../storage/object-store.js';

/** The file, as a stage or a listing reads it: its size and ranges of its bytes. */
export interface RangeReader {
  size(): Promise<number>;
  range(range: ByteRange): Promise<Buffer>;
}

/** The file is not Parquet, or lacks (or mistypes) a column the run names: a usage error (exit 2) when listing. */
export class ParquetInputError extends CascadeError {
  override name = 'ParquetInputError';
}

/** An opened Parquet file: its metadata and bytes. */
export interface ParquetFile {
  ref: string;
  metadata: FileMetaData;
  buffer: AsyncBuffer;
  rows: number;
}

/** What a column must hold: `bytes` (an image column: BYTE_ARRAY), `text` (a URL column), `key` (text or an integer). */
export type ColumnRole = 'bytes' | 'text' | 'key';

/** Reads the footer of the Parquet file `ref`; a file that is not Parquet is a ParquetInputError. */
export async function openParquet(ref: string, reader: RangeReader): Promise<ParquetFile> {
  const size = await reader.size();
  const buffer: AsyncBuffer = {
    byteLength: size,
    slice: async (start, end) => {
      const buf = await reader.range({ offset: start, length: (end ?? size) - start });
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    },
  };
  let metadata: FileMetaData;
  try {
    if (size < 12) throw new Error(`${size} bytes is too short for Parquet`);
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    // A read that failed (missing, refused, storage down) is that, not a verdict on the bytes.
    if (typeof (err as { code?: unknown }).code === 'string' || /^Failed to read/.test((err as Error).message)) throw err;
    throw new ParquetInputError(`${ref} is not a Parquet file: ${(err as Error).message}`);
  }
  return { ref, metadata, buffer, rows: Number(metadata.num_rows) };
}

/** The top-level column names of a file. */
export function columnNames(file: ParquetFile): string[] {
  return parquetSchema(file.metadata).children.map((c) => c.element.name);
}

/** Throws a ParquetInputError unless `column` is a top-level, non-repeated column fit for `role`. */
export function checkColumn(file: ParquetFile, column: string, role: ColumnRole): void {
  const node = parquetSchema(file.metadata).children.find((c) => c.element.name === column);
  if (!node) throw new ParquetInputError(`${file.ref} has no column ${JSON.stringify(column)} (columns: ${columnNames(file).join(', ')})`);
  const e = node.element;
  const type = e.type ?? 'a group';
  const fits =
    node.children.length === 0 &&
    e.repetition_type !== 'REPEATED' &&
    (role === 'bytes'
      ? type === 'BYTE_ARRAY' || type === 'FIXED_LEN_BYTE_ARRAY'
      : role === 'text'
        ? type === 'BYTE_ARRAY'
        : type === 'BYTE_ARRAY' || type === 'INT32' || type === 'INT64');
  const wanted = role === 'bytes' ? 'binary (BYTE_ARRAY)' : role === 'text' ? 'a string (BYTE_ARRAY)' : 'a string or an integer';
  if (!fits)
    throw new ParquetInputError(
      `${file.ref}: column ${JSON.stringify(column)} is ${e.repetition_type === 'REPEATED' ? 'repeated ' : ''}${type}, not ${wanted}`,
    );
}

/** The values of one column over every row, as strings (null stays null): a listing's keys or URLs. */
export async function readTextColumn(file: ParquetFile, column: string): Promise<Array<string | null>> {
  const values: Array<string | null> = [];
  await parquetRead({
    file: file.buffer,
    metadata: file.metadata,
    columns: [column],
    rowFormat: 'array',
    onComplete: (rows: unknown[][]) => {
      for (const [v] of rows) values.push(v === null || v === undefined ? null : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v));
    },
  });
  return values;
}

/** The bytes in `column` of rows `start` to `end` (exclusive), null where a cell is null. */
export async function readCells(file: ParquetFile, column: string, start: number, end: number): Promise<Array<Buffer | null>> {
  if (start >= file.rows) throw new ParquetInputError(`${file.ref} has ${file.rows} rows: no row ${start}`);
  let values: unknown[] = [];
  await parquetRead({
    file: file.buffer,
    metadata: file.metadata,
    columns: [column],
    rowStart: start,
    rowEnd: Math.min(end, file.rows),
    utf8: false,
    useOffsetIndex: true,
    rowFormat: 'array',
    onComplete: (rows: unknown[][]) => {
      values = rows.map((r) => r[0]);
    },
  });
  return values.map((value, i) => {
    if (value === null || value === undefined) return null;
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    if (typeof value === 'string') return Buffer.from(value, 'utf8');
    throw new ParquetInputError(`${file.ref}: column ${JSON.stringify(column)} row ${start + i} holds ${typeof value}, not bytes`);
  });
}
