/**
 * What a process may read from its local disk when a ref names a local path. A job's refs are
 * data written by whoever submitted the run, so image reads are confined to configured roots
 * (`sources.localRoots`): the file's real path (symlinks and `..` resolved) must lie below the
 * real path of a root. Whatever the roots, only regular files are read, never anything under
 * /proc, /sys or /dev, and a FIFO can never block the read. Refusals are ForbiddenPathError
 * (the manifest's `forbidden` error kind), raised before a byte of the file is read.
 */
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type ByteRange, ObjectNotFoundError, ObjectTooLargeError, ObjectTruncatedError } from './object-store.js';

/** A ref this process may not read: outside the local roots, a special file, or a malformed S3 key (`..`). */
export class ForbiddenPathError extends Error {
  readonly code = 'FORBIDDEN_PATH';
  override name = 'ForbiddenPathError';
  /** `ref` is the ref as given; `reason` says why it is refused. */
  constructor(
    readonly ref: string,
    readonly reason: string,
  ) {
    super(`Forbidden: ${JSON.stringify(ref)} ${reason}`);
  }
}

/** True for a ForbiddenPathError, including one that lost its class crossing a thread boundary. */
export function isForbiddenPath(err: unknown): boolean {
  return err instanceof ForbiddenPathError || (err as { code?: unknown } | null)?.code === 'FORBIDDEN_PATH';
}

/** Trees of the kernel's pseudo-files and devices: never images, whatever the roots say. */
const SPECIAL_TREES = ['/proc', '/sys', '/dev'];

/** True when `child` is `root` or lies below it (both absolute and normalised). */
export function isWithin(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  if (rel === '') return true;
  if (path.isAbsolute(rel)) return false;
  return rel.split(path.sep)[0] !== '..';
}

export interface ConfinedReadOptions {
  /**
   * Folders (or single files) the read must stay within, after symlinks are resolved on both
   * sides; relative ones resolve against the cwd. `[]` refuses every local read. Absent: any
   * path, still with the special-file rules (trusted callers: model files named by a config).
   */
  roots?: readonly string[];
  /** Refuse files larger than this many bytes (ObjectTooLargeError), checked before reading. */
  maxBytes?: number;
  /** Names the object in errors (default: the path). */
  ref?: string;
  /** Read only these bytes of the file (`maxBytes` then limits `length`); a file that ends before them is an ObjectTruncatedError. */
  range?: ByteRange;
}

/**
 * Reads a whole local file under the confinement rules (module comment). Missing files are
 * ObjectNotFoundError, as are directories; escapes, special files and permission failures are
 * ForbiddenPathError. The file opened is checked to be the one whose real path was checked
 * (same device and inode), so swapping a path component for a symlink meanwhile is refused too.
 */
export async function readConfinedFile(file: string, o: ConfinedReadOptions = {}): Promise<Buffer> {
  const { ref, real, st } = await confinedStat(file, o);
  if (o.range && o.maxBytes !== undefined && o.range.length > o.maxBytes) throw new ObjectTooLargeError(ref, o.range.length, o.maxBytes);
  if (!o.range && o.maxBytes !== undefined && st.size > o.maxBytes) throw new ObjectTooLargeError(ref, st.size, o.maxBytes);
  let handle: fs.FileHandle;
  try {
    // O_NONBLOCK: a FIFO swapped in after the stat must not hang a threadpool thread waiting for
    // a writer; O_NOFOLLOW: nor may the last component have become a symlink.
    handle = await fs.open(real, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
  } catch (err) {
    throw fsError(err, ref);
  }
  try {
    const opened = await handle.stat();
    if (opened.dev !== st.dev || opened.ino !== st.ino) throw new ForbiddenPathError(ref, 'changed while it was being opened');
    checkRegular(opened, ref);
    if (o.range) return await readRange(handle, o.range, ref);
    return await readCapped(handle, opened.size, o.maxBytes, ref);
  } finally {
    await handle.close();
  }
}

/**
 * The confinement checks of readConfinedFile without the read: the file's real path and its
 * stat, or the ForbiddenPathError / ObjectNotFoundError a read would raise (a shard's size, before ranged reads).
 */
export async function confinedStat(file: string, o: Pick<ConfinedReadOptions, 'roots' | 'ref'> = {}): Promise<{ ref: string; real: string; st: Stats }> {
  const ref = o.ref ?? file;
  const abs = path.resolve(file);
  const realRoots = o.roots === undefined ? undefined : await checkLexically(abs, o.roots, ref);
  const real = await realPath(abs, ref);
  if (realRoots && !realRoots.some((r) => isWithin(real, r)))
    throw new ForbiddenPathError(ref, `resolves to ${real}, outside the configured local roots (sources.localRoots)`);
  const tree = SPECIAL_TREES.find((t) => isWithin(real, t));
  if (tree) throw new ForbiddenPathError(ref, `resolves to ${real}, under ${tree}: not an image file`);
  const st = await fs.stat(real).catch((err: unknown) => {
    throw fsError(err, ref);
  });
  checkRegular(st, ref);
  return { ref, real, st };
}

/**
 * Refuses, without touching the file system for `abs`, a path that is not written below a root
 * (as given, or as its real path); returns the roots' real paths for the check after resolving.
 */
async function checkLexically(abs: string, roots: readonly string[], ref: string): Promise<string[]> {
  if (roots.length === 0) throw new ForbiddenPathError(ref, 'is a local path, and this process reads no local files (no sources.localRoots configured)');
  const given = roots.map((r) => path.resolve(r));
  // A root that does not exist (yet) holds nothing to read; it simply matches nothing.
  const real = (await Promise.all(given.map((r) => fs.realpath(r).catch(() => undefined)))).filter((r): r is string => r !== undefined);
  if (!given.some((r) => isWithin(abs, r)) && !real.some((r) => isWithin(abs, r)))
    throw new ForbiddenPathError(ref, 'is outside the configured local roots (sources.localRoots)');
  return real;
}

async function realPath(abs: string, ref: string): Promise<string> {
  try {
    return await fs.realpath(abs);
  } catch (err) {
    throw fsError(err, ref);
  }
}

function checkRegular(st: Stats, ref: string): void {
  if (st.isDirectory()) throw new ObjectNotFoundError(ref, 'it is a directory');
  if (!st.isFile()) throw new ForbiddenPathError(ref, `is not a regular file (${fileType(st)})`);
}

function fileType(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'a special file';
}

/** The store error for a failed realpath/stat/open. */
function fsError(err: unknown, ref: string): Error {
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case 'ENOENT':
      return new ObjectNotFoundError(ref, undefined, { cause: err });
    case 'ENOTDIR':
      return new ObjectNotFoundError(ref, 'a parent path is not a directory', { cause: err });
    case 'EISDIR':
      return new ObjectNotFoundError(ref, 'it is a directory', { cause: err });
    case 'ELOOP':
      return new ForbiddenPathError(ref, 'is a symbolic link loop, or became a symbolic link while being opened');
    case 'EACCES':
    case 'EPERM':
      return new ForbiddenPathError(ref, 'cannot be read: permission denied');
    default:
      return err as Error;
  }
}

/** Reads exactly `range` of an open file; a file that ends first is an ObjectTruncatedError. */
async function readRange(handle: fs.FileHandle, range: ByteRange, ref: string): Promise<Buffer> {
  const buf = Buffer.alloc(range.length);
  let got = 0;
  while (got < range.length) {
    const { bytesRead } = await handle.read(buf, got, range.length - got, range.offset + got);
    if (bytesRead === 0) throw new ObjectTruncatedError(ref, range, range.offset + got);
    got += bytesRead;
  }
  return buf;
}

/** Reads an open regular file whole; the read is capped in case it grew since its stat. */
async function readCapped(handle: fs.FileHandle, size: number, maxBytes: number | undefined, ref: string): Promise<Buffer> {
  const limit = maxBytes ?? Number.MAX_SAFE_INTEGER;
  const chunks: Buffer[] = [];
  let total = 0;
  // One read sized from the stat in the common case; one byte more than expected detects growth.
  let want = Math.min(size, limit) + 1;
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
}
