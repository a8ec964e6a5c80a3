/**
 * ObjectStore over a local directory, plus the file helpers the fetch and listing code share:
 * size-limited reads and a deterministic recursive walk.
 */
import { randomBytes } from 'node:crypto';
import { type Dirent, type Stats, constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { makeDir } from './make-dir.js';
import {
  checkRange,
  compareKeys,
  type GetOptions,
  InvalidKeyError,
  type ListOptions,
  type ListPrefixesOptions,
  type ObjectInfo,
  ObjectNotFoundError,
  type ObjectStore,
  ObjectTooLargeError,
} from './object-store.js';

// Temp files from in-flight puts; list() hides them so readers never see partial objects.
const TEMP_PREFIX = '.cascade-tmp-';

/** A file found by walkFiles: `rel` is '/'-separated and relative to the walked directory. */
export interface WalkedFile {
  rel: string;
  abs: string;
  size: number;
}

/** ObjectStore over a directory; keys map to files below it and may never escape it. */
export class LocalStore implements ObjectStore {
  readonly root: string;

  /** `rootDir` need not exist yet: put() creates directories as needed. */
  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
  }

  /** Maps a key to its file path, refusing anything that could resolve outside the root. */
  resolve(key: string): string {
    const segments = checkKey(key, false);
    const abs = path.join(this.root, ...segments);
    const rel = path.relative(this.root, abs);
    // checkKey already refuses '..'; this guards against platform path quirks.
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new InvalidKeyError(key, 'resolves outside the store root');
    return abs;
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    return readLocalFile(this.resolve(key), opts.maxBytes);
  }

  async getStream(key: string): Promise<Readable> {
    return openLocalStream(this.resolve(key));
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    const file = this.resolve(key);
    checkRange(file, start, end);
    return readLocalRange(file, start, end);
  }

  async put(key: string, body: Buffer | string): Promise<void> {
    await this.putStream(key, [body]);
  }

  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    const file = this.resolve(key);
    const dir = path.dirname(file);
    await makeDir(dir);
    const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    await fs.writeFile(tmp, body, { flag: 'wx' });
    try {
      // link() fails when the name exists: the claim and the write are one atomic step.
      await fs.link(tmp, file);
      return true;
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async putStream(key: string, chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): Promise<void> {
    const file = this.resolve(key);
    const dir = path.dirname(file);
    await makeDir(dir);
    // Same directory as the target so rename() is atomic (no cross-device move).
    const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      const handle = await fs.open(tmp, 'wx');
      try {
        for await (const chunk of chunks) await handle.write(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
        // Without this a crash soon after rename can leave an empty file under the final name.
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  async *list(prefix = '', opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    // Walk only the deepest directory the prefix names in full; the tail is a name prefix.
    const cut = prefix.lastIndexOf('/') + 1;
    const dirKey = prefix.slice(0, cut);
    // Every key here starts with dirKey: an `after` outside it is before all of them or after all of them.
    let after: string | undefined;
    if (opts.after !== undefined) {
      if (opts.after.startsWith(dirKey)) after = opts.after.slice(dirKey.length);
      else if (Buffer.compare(Buffer.from(dirKey), Buffer.from(opts.after)) < 0) return;
    }
    const namePrefix = prefix.slice(cut);
    const segments = dirKey === '' ? [] : checkKey(dirKey, true);
    if (namePrefix.includes('\0')) throw new InvalidKeyError(prefix, 'contains a NUL character');
    const dir = path.join(this.root, ...segments);
    try {
      for await (const f of walkFiles(dir, { namePrefix, after, skip: (name) => name.startsWith(TEMP_PREFIX) })) {
        yield { key: dirKey + f.rel, size: f.size };
      }
    } catch (err) {
      // A missing root or prefix directory is simply an empty listing, as in S3.
      if (isCode(err, 'ENOENT') && (err as NodeJS.ErrnoException).path === dir) return;
      if (isCode(err, 'ENOTDIR') && (err as NodeJS.ErrnoException).path === dir) return;
      throw err;
    }
  }

  async listPrefixes(prefix: string, opts: ListPrefixesOptions = {}): Promise<string[]> {
    // Folders are the only common prefixes a directory tree has: another delimiter finds none here.
    if ((opts.delimiter ?? '/') !== '/') return [];
    const cut = prefix.lastIndexOf('/') + 1;
    const dirKey = prefix.slice(0, cut);
    const namePrefix = prefix.slice(cut);
    if (namePrefix.includes('\0')) throw new InvalidKeyError(prefix, 'contains a NUL character');
    const dir = path.join(this.root, ...(dirKey === '' ? [] : checkKey(dirKey, true)));
    let dirents: Dirent[];
    try {
      dirents = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) return [];
      throw err;
    }
    const found: string[] = [];
    for (const d of dirents) {
      if (!d.name.startsWith(namePrefix) || d.name.startsWith(TEMP_PREFIX)) continue;
      // Only a symlink needs a stat to know whether it leads to a folder.
      const isDir = d.isSymbolicLink() ? (await statEntry(d, path.join(dir, d.name)))?.isDirectory() : d.isDirectory();
      if (isDir) found.push(`${dirKey}${d.name}/`);
    }
    return found.sort(compareKeys);
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.resolve(key), { force: true });
  }

  describe(): string {
    return this.root;
  }
}

/**
 * Validates a key and splits it into path segments: relative, '/'-separated, no '.', '..' or
 * empty segments, no NUL or backslash. `dirPrefix` allows the trailing '/' of a listing prefix.
 */
function checkKey(key: string, dirPrefix: boolean): string[] {
  if (typeof key !== 'string' || key === '') throw new InvalidKeyError(String(key), 'empty key');
  if (key.includes('\0')) throw new InvalidKeyError(key, 'contains a NUL character');
  // A backslash is a separator on Windows; refusing it keeps keys portable and traversal-proof.
  if (key.includes('\\')) throw new InvalidKeyError(key, 'contains a backslash (keys are /-separated)');
  if (key.startsWith('/') || path.isAbsolute(key)) throw new InvalidKeyError(key, 'absolute keys are not allowed');
  const segments = (dirPrefix && key.endsWith('/') ? key.slice(0, -1) : key).split('/');
  for (const seg of segments) {
    if (seg === '..') throw new InvalidKeyError(key, "'..' segments are not allowed");
    if (seg === '.') throw new InvalidKeyError(key, "'.' segments are not allowed");
    if (seg === '') throw new InvalidKeyError(key, 'empty path segment');
  }
  return segments;
}

/**
 * Reads a whole file, refusing it when larger than `maxBytes`. Size is checked on the open handle
 * (no stat/open race), and the read itself is capped in case the file grows meanwhile.
 * `ref` names the object in errors (defaults to the path).
 */
export async function readLocalFile(file: string, maxBytes?: number, ref: string = file): Promise<Buffer> {
  const { handle, st } = await openLocalFile(file, ref);
  try {
    if (maxBytes !== undefined && st.size > maxBytes) throw new ObjectTooLargeError(ref, st.size, maxBytes);
    const limit = maxBytes ?? Number.MAX_SAFE_INTEGER;
    const chunks: Buffer[] = [];
    let total = 0;
    // One read sized from the stat in the common case; asking for one byte more than expected
    // detects growth after the stat, which must not slip past the limit or be truncated.
    let want = Math.min(st.size, limit) + 1;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(want, limit - total + 1));
      const { bytesRead } = await handle.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      chunks.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > limit) throw new ObjectTooLargeError(ref, total, limit, true);
      want = 1 << 16;
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } finally {
    await handle.close();
  }
}

/** Bytes [start, end) of a file (fewer at its end), read with positioned reads; the range is checked by the caller. */
async function readLocalRange(file: string, start: number, end: number): Promise<Buffer> {
  const { handle } = await openLocalFile(file, file);
  try {
    const buf = Buffer.alloc(end - start);
    let filled = 0;
    while (filled < buf.length) {
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, start + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === buf.length ? buf : buf.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/**
 * Opens a file as a stream, with readLocalFile's not-found rules (missing, a directory, not a
 * regular file → ObjectNotFoundError before any byte is read). `ref` names the object in errors.
 */
export async function openLocalStream(file: string, ref: string = file): Promise<Readable> {
  const { handle } = await openLocalFile(file, ref);
  // autoClose (the default) closes the handle when the stream ends or is destroyed.
  return handle.createReadStream();
}

/** Opens a regular file for reading; anything else that is not there to read is an ObjectNotFoundError. */
async function openLocalFile(file: string, ref: string): Promise<{ handle: fs.FileHandle; st: Stats }> {
  let handle: fs.FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO by mistake must not hang a threadpool thread waiting for a writer.
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    if (isCode(err, 'ENOENT')) throw new ObjectNotFoundError(ref, undefined, { cause: err });
    if (isCode(err, 'ENOTDIR')) throw new ObjectNotFoundError(ref, 'a parent path is not a directory', { cause: err });
    if (isCode(err, 'EISDIR')) throw new ObjectNotFoundError(ref, 'it is a directory', { cause: err });
    throw err;
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new ObjectNotFoundError(ref, 'it is a directory');
    if (!st.isFile()) throw new ObjectNotFoundError(ref, 'not a regular file');
    return { handle, st };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

export interface WalkOptions {
  /** Only top-level entries whose name starts with this are visited. */
  namePrefix?: string;
  /** Entry names to skip entirely (files and directories), at every level. */
  skip?: (name: string) => boolean;
  /** Resume a walk: only files whose relative path sorts after this one (subtrees wholly before it are not read). */
  after?: string;
}

/**
 * Recursively lists regular files below `dir` in UTF-8 byte order of their relative path, the
 * order S3 would list the same keys in. Symlinks are followed (broken ones skipped); a symlink
 * back to an ancestor directory is skipped so cycles terminate.
 */
export async function* walkFiles(dir: string, opts: WalkOptions = {}): AsyncGenerator<WalkedFile> {
  const rootStat = await fs.stat(dir);
  if (!rootStat.isDirectory()) {
    const err: NodeJS.ErrnoException = new Error(`ENOTDIR: not a directory, scandir '${dir}'`);
    err.code = 'ENOTDIR';
    err.path = dir;
    throw err;
  }
  yield* walkDir(dir, '', new Set([inodeKey(rootStat)]), opts, opts.namePrefix ?? '');
}

/** Whether every path under `order` (a file's relative path, or a directory's with its '/') sorts at or before `after`. */
function wholly(order: string, isDir: boolean, after: string): boolean {
  const c = Buffer.compare(Buffer.from(order), Buffer.from(after));
  // A directory whose prefix `after` does not extend holds only paths on the same side of it as the prefix.
  return isDir ? c < 0 && !after.startsWith(order) : c <= 0;
}

async function* walkDir(abs: string, rel: string, ancestors: Set<string>, opts: WalkOptions, namePrefix: string): AsyncGenerator<WalkedFile> {
  const dirents = await fs.readdir(abs, { withFileTypes: true });
  const entries: { name: string; abs: string; stat: Stats; order: Buffer }[] = [];
  for (const d of dirents) {
    if (!d.name.startsWith(namePrefix) || opts.skip?.(d.name)) continue;
    const entryAbs = path.join(abs, d.name);
    const st = await statEntry(d, entryAbs);
    if (!st || !(st.isFile() || st.isDirectory())) continue;
    // Sorting a directory as "name/" puts its whole subtree exactly where its keys sort globally.
    entries.push({ name: d.name, abs: entryAbs, stat: st, order: Buffer.from(st.isDirectory() ? `${d.name}/` : d.name) });
  }
  entries.sort((a, b) => Buffer.compare(a.order, b.order));
  for (const e of entries) {
    const entryRel = rel + e.name;
    if (opts.after !== undefined && wholly(e.stat.isDirectory() ? `${entryRel}/` : entryRel, e.stat.isDirectory(), opts.after)) continue;
    if (e.stat.isFile()) {
      yield { rel: entryRel, abs: e.abs, size: e.stat.size };
      continue;
    }
    const id = inodeKey(e.stat);
    if (ancestors.has(id)) continue;
    ancestors.add(id);
    try {
      yield* walkDir(e.abs, `${entryRel}/`, ancestors, opts, '');
    } finally {
      ancestors.delete(id);
    }
  }
}

async function statEntry(d: Dirent, abs: string): Promise<Stats | undefined> {
  try {
    return d.isSymbolicLink() ? await fs.stat(abs) : await fs.lstat(abs);
  } catch (err) {
    // Broken symlinks and files deleted mid-walk are not part of the listing.
    if (isCode(err, 'ENOENT') || isCode(err, 'ELOOP')) return undefined;
    throw err;
  }
}

function inodeKey(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

function isCode(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code;
}
