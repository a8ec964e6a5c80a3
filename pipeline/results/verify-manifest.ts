/**
 * The manifest invariant — exactly one row per input, none lost, none doubled, none invented —
 * checked by streaming a manifest against the keys of a source. The checker itself is pure
 * (feed it keys and lines, parsed by manifest-reader.ts); the readers stream a local or remote
 * manifest line by line, so a manifest of millions of rows never sits in memory, only the
 * source's key set does.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isRemoteUrl } from '../storage/location.js';
import { type ManifestLine, parseManifestLine, readManifestRows, readManifestShards, readStoredManifest } from './manifest-reader.js';
import { LocalStore, openLocalStream } from '../storage/local-store.js';
import { ObjectNotFoundError, readLines } from '../storage/object-store.js';
import type { Stores } from '../storage/stores.js';

/** A manifest line that is not a valid ManifestRow. */
export interface InvalidRow {
  /** 1-based line number in the manifest. */
  line: number;
  /** The row's key when one could be read, else null. */
  key: string | null;
  message: string;
}

/** What verify found; `ok` is true only when every list is empty. */
export interface VerifyReport {
  ok: boolean;
  /** Distinct keys in the source. */
  sourceKeys: number;
  /**
   * Repeats of a source key dropped by the listing (a key list naming a key twice): each key
   * still needs exactly one row, as in the run, whose summary counts the same repeats.
   */
  sourceDuplicates: number;
  /** Non-blank lines in the manifest. */
  manifestRows: number;
  /** Rows with `error` set (valid rows that record a failed image; not a violation). */
  errorRows: number;
  counts: { missing: number; duplicate: number; unknown: number; invalid: number };
  /** Up to `sampleLimit` examples of each violation, in the order found. */
  missing: string[];
  duplicate: Array<{ key: string; rows: number }>;
  unknown: string[];
  invalid: InvalidRow[];
}

/** Accumulates source keys and manifest lines, then reports violations of the invariant. */
export class ManifestChecker {
  // Per source key: how many manifest rows named it. Unknown keys are counted apart.
  private readonly seen = new Map<string, number>();
  private readonly unknownSeen = new Map<string, number>();
  private readonly invalid: InvalidRow[] = [];
  private invalidCount = 0;
  private rows = 0;
  private errors = 0;
  private sourceDuplicates = 0;

  /** `sampleLimit` caps each example list in the report (counts stay exact). */
  constructor(private readonly sampleLimit = 20) {}

  /** Add one key of the source; a key listed twice by the source counts once. */
  addSourceKey(key: string): void {
    if (this.seen.has(key)) this.sourceDuplicates++;
    else this.seen.set(key, 0);
  }

  /** Add one manifest line (`lineNo` is 1-based); blank lines are skipped. */
  addLine(text: string, lineNo: number): void {
    if (text.trim() !== '') this.addRow(parseManifestLine(text, lineNo));
  }

  /** Add one parsed manifest line (from readManifestRows). */
  addRow(r: ManifestLine): void {
    this.rows++;
    if (r.row === null) this.addInvalid({ line: r.line, key: r.key, message: r.message });
    else if (r.row.error) this.errors++;
    // A malformed row that still names its key counts as that key's row, so one broken row is
    // reported once (as invalid), not again as a missing key.
    const key = r.row === null ? r.key : r.row.key;
    if (key !== null) this.countKey(key);
  }

  /** The findings so far. */
  report(): VerifyReport {
    const missing: string[] = [];
    const duplicate: Array<{ key: string; rows: number }> = [];
    let missingCount = 0;
    let duplicateCount = 0;
    for (const [key, n] of this.seen) {
      if (n === 0 && missingCount++ < this.sampleLimit) missing.push(key);
      if (n > 1 && duplicateCount++ < this.sampleLimit) duplicate.push({ key, rows: n });
    }
    for (const [key, n] of this.unknownSeen) if (n > 1 && duplicateCount++ < this.sampleLimit) duplicate.push({ key, rows: n });
    const counts = { missing: missingCount, duplicate: duplicateCount, unknown: this.unknownSeen.size, invalid: this.invalidCount };
    return {
      ok: counts.missing + counts.duplicate + counts.unknown + counts.invalid === 0,
      sourceKeys: this.seen.size,
      sourceDuplicates: this.sourceDuplicates,
      manifestRows: this.rows,
      errorRows: this.errors,
      counts,
      missing,
      duplicate,
      unknown: [...this.unknownSeen.keys()].slice(0, this.sampleLimit),
      invalid: this.invalid,
    };
  }

  private countKey(key: string): void {
    const n = this.seen.get(key);
    if (n !== undefined) this.seen.set(key, n + 1);
    else this.unknownSeen.set(key, (this.unknownSeen.get(key) ?? 0) + 1);
  }

  private addInvalid(row: InvalidRow): void {
    this.invalidCount++;
    if (this.invalid.length < this.sampleLimit) this.invalid.push(row);
  }
}

/** `location` split into the folder or prefix that holds it and its name there. */
function parentAndName(location: string): { parent: string; name: string } {
  const cut = location.lastIndexOf('/');
  return { parent: location.slice(0, cut + 1) || '.', name: location.slice(cut + 1) };
}

/**
 * Streams the rows of a manifest, parsed and numbered: a JSONL file, one Parquet shard
 * (`….parquet`), or a run's output location (a local directory or a remote prefix), read as
 * the exports read it: its manifest.jsonl, else its Parquet shards. `s3://bucket/key.jsonl` is
 * that object. Missing → ObjectNotFoundError.
 */
export async function* readManifestLines(location: string, stores: Stores): AsyncGenerator<ManifestLine> {
  const shard = location.endsWith('.parquet');
  if (isRemoteUrl(location)) {
    if (shard || location.endsWith('.jsonl')) {
      const { parent, name } = parentAndName(location);
      const store = stores.open(parent);
      yield* shard ? readManifestShards(store, [name]) : readManifestRows(readLines(await store.getStream(name)));
    } else yield* (await readStoredManifest(stores.open(location))).entries;
    return;
  }
  const file = path.resolve(location);
  const st = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new ObjectNotFoundError(location, undefined, { cause: err });
    throw err;
  });
  // Opened before the first row, so a missing manifest inside a directory is a not-found, not a stream error.
  if (st.isDirectory()) yield* (await readStoredManifest(new LocalStore(file))).entries;
  else if (shard) yield* readManifestShards(new LocalStore(path.dirname(file)), [path.basename(file)]);
  else yield* readManifestRows(readLines(await openLocalStream(file)));
}

/** Checks the manifest's rows (from readManifestLines or readManifestRows) against `sourceKeys`: the whole invariant in one pass over each. */
export async function verifyManifest(
  sourceKeys: AsyncIterable<string> | Iterable<string>,
  manifest: AsyncIterable<ManifestLine> | Iterable<ManifestLine>,
  sampleLimit?: number,
): Promise<VerifyReport> {
  const checker = new ManifestChecker(sampleLimit);
  for await (const key of sourceKeys) checker.addSourceKey(key);
  for await (const r of manifest) checker.addRow(r);
  return checker.report();
}

/** Human-readable report: one line of counts, then examples of each violation. */
export function formatVerifyReport(r: VerifyReport): string {
  const head =
    `${r.ok ? 'OK' : 'FAILED'}: ${r.sourceKeys} inputs, ${r.manifestRows} manifest rows (${r.errorRows} with an image error); ` +
    `missing ${r.counts.missing}, duplicate ${r.counts.duplicate}, unknown ${r.counts.unknown}, invalid ${r.counts.invalid}` +
    (r.sourceDuplicates > 0 ? `; ${r.sourceDuplicates} repeated source key${r.sourceDuplicates === 1 ? '' : 's'} counted once` : '');
  const lines = [head];
  for (const k of r.missing) lines.push(`  missing:   ${k}`);
  for (const d of r.duplicate) lines.push(`  duplicate: ${d.key} (${d.rows} rows)`);
  for (const k of r.unknown) lines.push(`  unknown:   ${k}`);
  for (const i of r.invalid) lines.push(`  invalid:   line ${i.line}${i.key === null ? '' : ` (${i.key})`}: ${i.message}`);
  const shown = r.missing.length + r.duplicate.length + r.unknown.length + r.invalid.length;
  const total = r.counts.missing + r.counts.duplicate + r.counts.unknown + r.counts.invalid;
  if (total > shown) lines.push(`  … and ${total - shown} more`);
  return lines.join('\n');
}
