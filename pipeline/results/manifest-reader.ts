/**
 * Reading manifest.jsonl one row at a time: each non-blank line parsed and checked against
 * ManifestRow, with its 1-based line number, so a manifest of millions of rows never sits in
 * memory. `cascade verify` and the review export both read manifests through here.
 */
import { ManifestRow } from './manifest.js';

/** One non-blank manifest line: a valid row, or the key it names (when readable) and why it is not a row. */
export type ManifestLine = { line: number; row: ManifestRow } | { line: number; row: null; key: string | null; message: string };

/** Parses one manifest line (`line` is its 1-based number); never throws. */
export function parseManifestLine(text: string, line: number): ManifestLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { line, row: null, key: null, message: `not JSON: ${(err as Error).message}` };
  }
  const parsed = ManifestRow.safeParse(json);
  if (parsed.success) return { line, row: parsed.data };
  const key = typeof (json as { key?: unknown } | null)?.key === 'string' ? (json as { key: string }).key : null;
  const message = parsed.error.issues.map((i) => `${i.path.join('.') || '(row)'}: ${i.message}`).join('; ');
  return { line, row: null, key, message };
}

/** The manifest lines of `lines` (the text of manifest.jsonl, line by line), blank lines skipped but counted. */
export async function* readManifestRows(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<ManifestLine> {
  let n = 0;
  for await (const text of lines) {
    n++;
    if (text.trim() !== '') yield parseManifestLine(text, n);
  }
}
