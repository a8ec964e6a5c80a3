/** DuckDB (`@duckdb/node-api`) as the tests' independent Parquet reader: one query's rows as JSON objects. */
import { DuckDBInstance } from '@duckdb/node-api';

/** The rows `sql` returns, read by a fresh in-memory DuckDB. */
export async function duckRows(sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    return (await c.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    c.closeSync();
  }
}
