/**
 * What an input format is to the producers: a row of the table in input-formats.ts. Each format
 * says whether a source names it, lists the source's inputs in a deterministic order, and names
 * the local roots a one-process `cascade run` of it may read.
 */
import path from 'node:path';
import type { InputColumns } from '../../config/schema.js';
import { parseRef } from '../../pipeline/storage/location.js';
import type { Stores } from '../../pipeline/storage/stores.js';
import type { ListSourceOptions } from '../list-source.js';
import type { ListingCursor } from '../listing-cursor.js';
import type { ListedInput } from './listed-input.js';

export interface ListInputOptions extends ListSourceOptions {
  /** Parquet sources: which columns hold the image bytes, the URLs and the keys (config `sources.columns`). */
  columns?: InputColumns;
  /**
   * Read each sample's ground-truth label too (calibration; runs never do): a WebDataset sample's
   * `.cls` or `.json` member, a Parquet row's `column` (no column: Parquet inputs carry none).
   */
  labels?: { column?: string };
}

/** One input format (a row of INPUT_FORMATS). */
export interface InputFormat {
  name: string;
  /** Whether `source` is written as this format's (by its file extension, braces and globs aside). */
  matches(source: string): boolean;
  /** The source's inputs in order: loose refs, or sharded samples with their place in their shard. */
  list(source: string, opts: ListInputOptions): AsyncIterable<string | ListedInput>;
  /** The same inputs after `cursor` (all from null), each with the cursor just after it (producers/listing-cursor.ts). */
  listFrom(source: string, opts: ListInputOptions, cursor: ListingCursor | null): AsyncIterable<ListedInput & { cursor: ListingCursor }>;
  /** The local roots a one-process `cascade run` of `source` reads from when its config names none. */
  localRoots(source: string, opts: { asList?: boolean; cwd?: string }): string[];
}

/** The stores of listing options; a remote source without them is a bug of the caller. */
export function storesOf(opts: Pick<ListSourceOptions, 'stores'>, source: string): Stores {
  if (!opts.stores) throw new Error(`source ${source} is remote but no stores were given to list it`);
  return opts.stores;
}

/** The file extension a (brace or glob) shard pattern's names end with, lower case (`.tar`, `.parquet`). */
export function shardExtension(source: string): string {
  // Each brace's first alternative stands for all of them: `{a,b}.tar` ends in .tar.
  const first = source.replace(/\{([^{},]*?)(?:\.\.[^{}]*|,[^{}]*)?\}/g, '$1');
  return path.posix.extname(first).toLowerCase();
}

/** A sharded source's default local root: the folder above its first brace or glob (or the file itself). */
export function shardRoots(source: string, opts: { cwd?: string } = {}): string[] {
  const ref = parseRef(source);
  if (ref.kind !== 'local' || ref.path.trim() === '') return [];
  const abs = path.resolve(opts.cwd ?? process.cwd(), ref.path);
  const wild = abs.search(/[{*?]/);
  if (wild < 0) return [path.dirname(abs)];
  const literal = abs.slice(0, wild);
  return [literal.endsWith('/') ? literal.slice(0, -1) || '/' : path.dirname(literal)];
}
