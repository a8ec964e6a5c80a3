/**
 * The manifest as Parquet: one column per ManifestRow field, typed, with the same names, so a
 * shard read back is manifest rows again and SQL over it reads like the JSONL
 * (`top5[1].name`, `error.kind`). top5 is a list of structs and error a nullable struct: DuckDB
 * reads them as `STRUCT(label INTEGER, name VARCHAR, p DOUBLE)[]` and `STRUCT(kind VARCHAR,
 * message VARCHAR)`; the list is Parquet's standard three-level form, which pyarrow reads too.
 */
import type { ParquetTable } from './parquet-table.js';

const string = (name: string, repetition_type: 'REQUIRED' | 'OPTIONAL') => ({
  name,
  type: 'BYTE_ARRAY' as const,
  converted_type: 'UTF8' as const,
  repetition_type,
});

/** The Parquet schema of manifest shards (docs/results.md, "Parquet"). */
export const MANIFEST_TABLE: ParquetTable = {
  name: 'manifest',
  schema: [
    { name: 'root', num_children: 7 },
    string('key', 'REQUIRED'),
    { name: 'label', type: 'INT32', repetition_type: 'OPTIONAL' },
    string('labelName', 'OPTIONAL'),
    { name: 'confidence', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    string('stage', 'OPTIONAL'),
    // The three-level list Parquet's spec asks for: top5 → list (repeated) → element.
    { name: 'top5', repetition_type: 'REQUIRED', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'REQUIRED', num_children: 3 },
    { name: 'label', type: 'INT32', repetition_type: 'REQUIRED' },
    string('name', 'OPTIONAL'),
    { name: 'p', type: 'DOUBLE', repetition_type: 'REQUIRED' },
    { name: 'error', repetition_type: 'OPTIONAL', num_children: 2 },
    string('kind', 'REQUIRED'),
    string('message', 'REQUIRED'),
  ],
  withoutStatistics: ['top5', 'error'],
};
