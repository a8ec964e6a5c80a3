/**
 * The shard files a sharded source names, in order: brace ranges and lists
 * (`shards/{000000..000999}.tar`, `{a,b}.parquet`, expanded as a shell would, zero padding
 * kept) and `*` / `?` globs in the file name (`data/*.parquet`, matched against a folder or S3
 * listing in key byte order). A source with neither is the one shard it names. Local shards come
 * back as absolute paths, S3 ones as `s3://bucket/key`.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CascadeError } from '../../config/errors.js';
import { formatRemoteUrl, parseRef } from '../../pipeline/storage/location.js';
import { compareKeys, isObjectNotFound } from '../../pipeline/storage/object-store.js';
import type { Stores } from '../../pipeline/storage/stores.js';
import { SourceNotFoundError } from '../list-source.js';

/** More shards than this in one brace expression is a typo, refused before expanding. */
export const MAX_BRACE_SHARDS = 10_000_000;

const BRACE = /\{([^{}]*)\}/;

/** True when `source` holds a brace expression or a glob character. */
export function isPattern(source: string): boolean {
  return BRACE.test(source) || /[*?]/.test(source);
}

/** One brace body read: a numeric range `000..009` (padded to the wider end) or a list `a,b,c`. */
function parseBrace(body: string, source: string): { from: number; to: number; count: number; width: number } | { list: string[] } {
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range) {
    const [a, b] = [range[1]!, range[2]!];
    const from = Number(a);
    const to = Number(b);
    const count = Math.abs(to - from) + 1;
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || count > MAX_BRACE_SHARDS)
      throw new CascadeError(`source ${JSON.stringify(source)}: {${body}} names ${count} shards, more than ${MAX_BRACE_SHARDS}`);
    return { from, to, count, width: /^-?0\d/.test(a) || /^-?0\d/.test(b) ? Math.max(a.length, b.length) : 0 };
  }
  if (body.includes(',')) return { list: body.split(',') };
  throw new CascadeError(`source ${JSON.stringify(source)}: {${body}} is neither a range {first..last} nor a list {a,b}`);
}

/** The alternatives of one brace body, in order. */
function braceAlternatives(body: string, source: string): string[] {
  const b = parseBrace(body, source);
  if ('list' in b) return b.list;
  const step = b.from <= b.to ? 1 : -1;
  return Array.from({ length: b.count }, (_, i) => String(b.from + i * step).padStart(b.width, '0'));
}

/**
 * How many shards `source` names without listing anything: the product of its braces'
 * alternatives (1 without braces), counted, not expanded; null with a glob, which only a listing can count.
 */
export function namedShardCount(source: string): number | null {
  if (/[*?]/.test(source)) return null;
  let n = 1;
  // Alternatives hold no braces, so expanding leftmost first meets exactly these braces.
  for (const m of source.matchAll(/\{([^{}]*)\}/g)) {
    const b = parseBrace(m[1]!, source);
    n *= 'list' in b ? b.list.length : b.count;
  }
  return n;
}

/** Every name a brace pattern expands to, in order (the leftmost brace varies slowest). */
export function* expandBraces(pattern: string, source = pattern): Generator<string> {
  const m = BRACE.exec(pattern);
  if (!m) {
    yield pattern;
    return;
  }
  const head = pattern.slice(0, m.index);
  const tail = pattern.slice(m.index + m[0].length);
  for (const alt of braceAlternatives(m[1]!, source)) yield* expandBraces(head + alt + tail, source);
}

/** A glob file name as a RegExp (`*`, `?`; never across `/`). */
function globRegExp(name: string): RegExp {
  const escaped = name
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`^${escaped}$`);
}

export interface ShardNameOptions {
  /** The process's stores, needed only for remote sources (s3://...). */
  stores?: Stores;
}

/** The shards `source` names, in order (see the module comment); a glob that matches nothing is a SourceNotFoundError. */
export async function* shardNames(source: string, opts: ShardNameOptions = {}): AsyncGenerator<string> {
  for (const name of expandBraces(source)) {
    if (!/[*?]/.test(name)) {
      yield normalise(name);
      continue;
    }
    let found = 0;
    for await (const shard of globShards(name, opts)) {
      found++;
      yield shard;
    }
    if (found === 0) throw new SourceNotFoundError(name, 'no file matches the pattern');
  }
}

function normalise(name: string): string {
  const ref = parseRef(name);
  if (ref.kind === 'remote') return formatRemoteUrl(ref);
  if (ref.kind === 'unsupported')
    throw new CascadeError(`unsupported shard ${JSON.stringify(name)}: scheme "${ref.scheme}://" (expected a local path or a store URL)`);
  return path.resolve(ref.path);
}

/** The files a glob in the last path component matches, in key byte order. */
async function* globShards(pattern: string, opts: ShardNameOptions): AsyncGenerator<string> {
  const ref = parseRef(pattern);
  if (ref.kind === 'unsupported') throw new CascadeError(`unsupported source ${JSON.stringify(pattern)}: scheme "${ref.scheme}://"`);
  const whole = ref.kind === 'remote' ? ref.key : ref.path;
  const cut = whole.lastIndexOf('/') + 1;
  const [dir, name] = [whole.slice(0, cut), whole.slice(cut)];
  if (/[*?]/.test(dir)) throw new CascadeError(`source ${JSON.stringify(pattern)}: a glob (* or ?) may only appear in the file name, not in a folder`);
  const match = globRegExp(name);
  if (ref.kind === 'remote') {
    if (!opts.stores) throw new Error(`source ${pattern} is remote but no stores were given to list it`);
    // Listed from the name's literal start: the store filters by prefix, the pattern does the rest.
    const literal = name.slice(0, name.search(/[*?]/));
    const store = opts.stores.open({ kind: 'remote', scheme: ref.scheme, bucket: ref.bucket, prefix: '' });
    try {
      for await (const o of store.list(dir + literal)) {
        const rest = o.key.slice(dir.length);
        if (match.test(rest)) yield formatRemoteUrl({ scheme: ref.scheme, bucket: ref.bucket, key: o.key });
      }
    } catch (err) {
      if (isObjectNotFound(err)) throw new SourceNotFoundError(pattern, `bucket "${ref.bucket}" does not exist`, { cause: err });
      throw err;
    }
    return;
  }
  const folder = path.resolve(dir === '' ? '.' : dir);
  let entries: string[];
  try {
    entries = (await fs.readdir(folder, { withFileTypes: true })).filter((e) => !e.isDirectory() && match.test(e.name)).map((e) => e.name);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new SourceNotFoundError(pattern, `${folder} is not a folder`, { cause: err });
    throw err;
  }
  for (const e of entries.sort(compareKeys)) yield path.join(folder, e);
}
