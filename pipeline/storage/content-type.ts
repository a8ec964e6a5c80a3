/**
 * The Content-Type an object is written with, from its key's extension: the one place that maps
 * them, so browsers, S3 consoles and downstream tools see a manifest as JSON lines and a plot as
 * an image rather than `application/octet-stream`.
 */

// Keys are compared lower-cased; the last extension wins (`x.stage0.json` is JSON).
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.jsonl': 'application/x-ndjson',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.csv': 'text/csv',
  '.xml': 'application/xml',
  '.manifest': 'application/x-ndjson',
  // Registered with IANA in 2024; DuckDB and pyarrow read by content, the type is for consoles and proxies.
  '.parquet': 'application/vnd.apache.parquet',
};

/** What any other key is written as. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/** The Content-Type for an object key, by its extension (DEFAULT_CONTENT_TYPE when unknown). */
export function contentTypeOf(key: string): string {
  const name = key.slice(key.lastIndexOf('/') + 1).toLowerCase();
  const dot = name.lastIndexOf('.');
  return (dot > 0 && CONTENT_TYPES[name.slice(dot)]) || DEFAULT_CONTENT_TYPE;
}
