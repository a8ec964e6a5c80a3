/**
 * Rows of one flat record type as Parquet (hyparquet-writer to write, hyparquet to read): a table
 * is its Parquet schema, whose top-level column names are the rows' field names. Files are
 * written whole (a shard) or streamed row group by row group (a file of any size), and read back
 * row group by row group with their schema checked first.
 */
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';

// The writer's schema type (hyparquet-writer pins its own hyparquet, whose types differ in details we do not use).
type SchemaElement = ConstructorParameters<typeof ParquetWriter>[0]['schema'][number];
/** The fields of a schema element both libraries agree on: what a file's schema is compared by. */
type SchemaShape = Pick<SchemaElement, 'name' | 'type' | 'repetition_type' | 'num_children' | 'converted_type' | 'type_length'>;

/** A Parquet table: its schema (root first, in hyparquet's flattened form) and a name for messages. */
export interface ParquetTable {
  name: string;
  schema: SchemaElement[];
  /** Top-level columns written without min/max statistics (absent: all have them): nested lists nobody filters on cost time to summarise. */
  withoutStatistics?: readonly string[];
}

/** Rows a table writes per row group unless told otherwise: DuckDB and pyarrow scan row groups in parallel. */
export const DEFAULT_ROW_GROUP_ROWS = 100_000;

/** The table's top-level columns, in schema order (a nested column's children are skipped). */
export function topLevelColumns(table: ParquetTable): string[] {
  const names: string[] = [];
  let i = 1;
  const skip = (): void => {
    const element = table.schema[i++]!;
    for (let c = 0; c < (element.num_children ?? 0); c++) skip();
  };
  while (i < table.schema.length) {
    names.push(table.schema[i]!.name);
    skip();
  }
  return names;
}

/** A writer of one Parquet file whose bytes are taken out after each row group, so the file never sits whole in memory. */
class DrainingWriter {
  private readonly bytes = new ByteWriter();
  private readonly writer: ParquetWriter;
  private readonly columns: string[];

  constructor(
    private readonly table: ParquetTable,
    private readonly rowGroupRows: number,
    createdBy: string,
  ) {
    this.columns = topLevelColumns(table);
    this.writer = new ParquetWriter({ writer: this.bytes, schema: table.schema, createdBy });
  }

  /** Encodes `rows` as row groups and returns the bytes written since the last call. */
  write(rows: readonly Record<string, unknown>[]): Uint8Array {
    if (rows.length > 0) {
      const columnData = this.columns.map((name) => ({
        name,
        data: rows.map((r) => r[name]) as unknown[],
        ...(this.table.withoutStatistics?.includes(name) ? { statistics: false } : {}),
      }));
      void this.writer.write({ columnData, rowGroupSize: this.rowGroupRows });
    }
    return this.drain();
  }

  /** Writes the footer and returns the last bytes. */
  finish(): Uint8Array {
    void this.writer.finish();
    return this.drain();
  }

  private drain(): Uint8Array {
    // A copy: the writer reuses its buffer from index 0 (its `offset` keeps counting the file's bytes).
    const out = new Uint8Array(this.bytes.buffer.slice(0, this.bytes.index));
    this.bytes.index = 0;
    return out;
  }
}

const CREATED_BY = 'cascade (hyparquet-writer)';

/** One whole Parquet file of `rows` (a manifest shard: bounded in rows by its caller). */
export function encodeParquet(table: ParquetTable, rows: readonly Record<string, unknown>[], rowGroupRows = DEFAULT_ROW_GROUP_ROWS): Buffer {
  const w = new DrainingWriter(table, rowGroupRows, CREATED_BY);
  const body = w.write(rows);
  const tail = w.finish();
  return Buffer.concat([body, tail]);
}

/** A Parquet file of `rows` as a stream of chunks, one row group at a time: memory holds one row group, not the file. */
export async function* parquetChunks(
  table: ParquetTable,
  rows: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>,
  rowGroupRows = DEFAULT_ROW_GROUP_ROWS,
): AsyncGenerator<Uint8Array> {
  const w = new DrainingWriter(table, rowGroupRows, CREATED_BY);
  let group: Record<string, unknown>[] = [];
  for await (const row of rows) {
    group.push(row);
    if (group.length >= rowGroupRows) {
      yield w.write(group);
      group = [];
    }
  }
  yield w.write(group);
  yield w.finish();
}

/** A Parquet file that is not a file of `table`: named by `where`, with the first difference found. */
export class ParquetTableError extends Error {
  override name = 'ParquetTableError';
}

/** The flattened schema without the root's name (writers name the root differently). */
function schemaShape(schema: readonly SchemaShape[]): string {
  return JSON.stringify(
    schema.slice(1).map((e) => [e.name, e.type ?? null, e.repetition_type ?? null, e.num_children ?? 0, e.converted_type ?? null, e.type_length ?? null]),
  );
}

/**
 * The rows of a Parquet file of `table`, one row group at a time. A file that is not Parquet, or
 * whose schema is not the table's (a column missing, renamed or of another type), throws a
 * ParquetTableError naming `where`.
 */
export async function* readParquetRows(bytes: Uint8Array, table: ParquetTable, where: string): AsyncGenerator<Record<string, unknown>> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let metadata: ReturnType<typeof parquetMetadata>;
  try {
    metadata = parquetMetadata(file);
  } catch (err) {
    throw new ParquetTableError(`${where} is not a Parquet file: ${(err as Error).message}`, { cause: err });
  }
  if (schemaShape(metadata.schema) !== schemaShape(table.schema)) {
    const expected = topLevelColumns(table);
    const found = topLevelColumns({ name: where, schema: metadata.schema as SchemaElement[] });
    const missing = expected.filter((c) => !found.includes(c));
    const detail = missing.length ? `missing column${missing.length === 1 ? '' : 's'} ${missing.join(', ')}` : `columns of other types than ${table.name}'s`;
    throw new ParquetTableError(`${where} is not a ${table.name} Parquet file: ${detail}`);
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    yield* await parquetReadObjects({ file, metadata, rowStart, rowEnd });
    rowStart = rowEnd;
  }
}
