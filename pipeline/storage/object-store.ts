/**
 * The storage interface shared by the local-directory and S3 stores, and the typed errors both
 * raise. Errors carry a string `code` too, because class identity is lost when an error crosses a
 * worker thread or is stored in a BullMQ job's failedReason. Also the helpers every caller of a
 * store shares: readJson (an object parsed and validated) and readLines (a stream's lines).
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { CascadeError } from '../../config/errors.js';
import type { z } from 'zod';

/** One listed object; `key` is relative to the store's root/prefix. */
export interface ObjectInfo {
  key: string;
  size: number;
}

export interface GetOptions {
  /** Refuse objects larger than this many bytes (ObjectTooLargeError), checked before reading when possible. */
  maxBytes?: number;
}

export interface ListOptions {
  /** List only keys after this one (relative to the store, like the listed keys). */
  after?: string;
}

export interface ListPrefixesOptions {
  /** The folder separator (S3's Delimiter); default '/'. */
  delimiter?: string;
  /** Read at most this many pages of the delimiter listing (a level of many keys and few folders is not read whole). */
  maxPages?: number;
}

/** A flat key → bytes store. Keys are '/'-separated and relative to the store's root. */
export interface ObjectStore {
  /** Reads a whole object; ObjectNotFoundError when missing, ObjectTooLargeError above `maxBytes`. */
  get(key: string, opts?: GetOptions): Promise<Buffer>;
  /**
   * Opens an object for reading as a stream, never holding it whole in memory. A missing object
   * rejects here (ObjectNotFoundError), before any byte is read; the caller destroys the stream
   * when it stops early.
   */
  getStream(key: string): Promise<Readable>;
  /**
   * Reads bytes [start, end) of an object without reading the rest (one member of a tar shard):
   * fewer when the object ends sooner, none from its end on. ObjectNotFoundError when missing;
   * a negative, fractional or reversed range is an InvalidRangeError before any read.
   */
  getRange(key: string, start: number, end: number): Promise<Buffer>;
  /** Writes (replaces) an object; readers see the old or the new content, never a partial one. */
  put(key: string, body: Buffer | string): Promise<void>;
  /**
   * Writes an object only if no object has the key; resolves false (writing nothing) when one
   * exists. Atomic on local disks and on S3 stores that honour `If-None-Match: *`; on stores that
   * ignore it, only an existing object seen before the write is detected (see S3Store).
   */
  putIfAbsent(key: string, body: Buffer | string): Promise<boolean>;
  /** Writes (replaces) an object from a stream of chunks, never holding the whole body in memory. */
  putStream(key: string, chunks: AsyncIterable<Buffer | string>): Promise<void>;
  /**
   * Lists objects whose key starts with `prefix` (a plain string prefix, as in S3), in key byte
   * order; with `after`, only keys that sort after it (a resumed listing: S3's StartAfter).
   */
  list(prefix?: string, opts?: ListOptions): AsyncIterable<ObjectInfo>;
  /**
   * The common prefixes one level below `prefix` (each ending with the delimiter, relative to the
   * store like listed keys), in key byte order: S3's CommonPrefixes. Only stores whose `list`
   * starts at `after` without reading the keys before it have this; a store without it is listed
   * in one sequence (pipeline/storage/split-listing.ts).
   */
  listPrefixes?(prefix: string, opts?: ListPrefixesOptions): Promise<string[]>;
  /** Deletes an object; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Where this store points, for logs and messages (`s3://bucket/prefix/` or a directory). */
  describe(): string;
}

export type StoreErrorCode = 'OBJECT_NOT_FOUND' | 'OBJECT_TOO_LARGE' | 'OBJECT_TRUNCATED' | 'INVALID_KEY' | 'INVALID_RANGE';

/** Bytes `offset` to `offset + length` (exclusive) of an object. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** The object (file or S3 key) does not exist. */
export class ObjectNotFoundError extends CascadeError {
  readonly code = 'OBJECT_NOT_FOUND' satisfies StoreErrorCode;
  override name = 'ObjectNotFoundError';
  /** `ref` is the full reference (path or s3:// URL); `detail` says why, when known. */
  constructor(
    readonly ref: string,
    detail?: string,
    options?: ErrorOptions,
  ) {
    super(`Object not found: ${ref}${detail ? ` (${detail})` : ''}`, options);
  }
}

/** The object is larger than the caller's byte limit. */
export class ObjectTooLargeError extends Error {
  readonly code = 'OBJECT_TOO_LARGE' satisfies StoreErrorCode;
  override name = 'ObjectTooLargeError';
  /** `size` is the object's size when known, or the number of bytes read before giving up. */
  constructor(
    readonly ref: string,
    readonly size: number,
    readonly maxBytes: number,
    sizeIsLowerBound = false,
  ) {
    super(`Object too large: ${ref} is ${sizeIsLowerBound ? 'more than ' : ''}${size} bytes, over the ${maxBytes}-byte limit`);
  }
}

/** The object ends before the bytes asked for (a truncated shard): `end` is where it ended. */
export class ObjectTruncatedError extends Error {
  readonly code = 'OBJECT_TRUNCATED' satisfies StoreErrorCode;
  override name = 'ObjectTruncatedError';
  /** `range` was asked for; the object ended at byte `end`. */
  constructor(
    readonly ref: string,
    readonly range: ByteRange,
    readonly end: number,
  ) {
    super(`Truncated: ${ref} ends at byte ${end}, before the end of bytes ${range.offset}-${range.offset + range.length}`);
  }
}

/** True for an ObjectTruncatedError, including one that lost its class crossing a thread boundary. */
export function isObjectTruncated(err: unknown): boolean {
  return err instanceof ObjectTruncatedError || (err as { code?: unknown } | null)?.code === 'OBJECT_TRUNCATED';
}

/** A key that a store refuses (path traversal, absolute, NUL, empty). */
export class InvalidKeyError extends Error {
  readonly code = 'INVALID_KEY' satisfies StoreErrorCode;
  override name = 'InvalidKeyError';
  /** `reason` completes "Invalid object key ...: <reason>". */
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`Invalid object key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** A byte range getRange refuses: negative, fractional or reversed. */
export class InvalidRangeError extends Error {
  readonly code = 'INVALID_RANGE' satisfies StoreErrorCode;
  override name = 'InvalidRangeError';
  /** `ref` names the object the range was asked of. */
  constructor(
    readonly ref: string,
    readonly start: number,
    readonly end: number,
  ) {
    super(`Invalid byte range [${start}, ${end}) of ${ref}: expected whole numbers with 0 <= start <= end`);
  }
}

/** Throws InvalidRangeError unless 0 <= start <= end, both safe integers. */
export function checkRange(ref: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) throw new InvalidRangeError(ref, start, end);
}

/** True for an ObjectNotFoundError, including one that lost its class crossing a thread boundary. */
export function isObjectNotFound(err: unknown): boolean {
  return err instanceof ObjectNotFoundError || (err as { code?: unknown } | null)?.code === 'OBJECT_NOT_FOUND';
}

/** True for an ObjectTooLargeError, including one that lost its class crossing a thread boundary. */
export function isObjectTooLarge(err: unknown): boolean {
  return err instanceof ObjectTooLargeError || (err as { code?: unknown } | null)?.code === 'OBJECT_TOO_LARGE';
}

/** Compares keys by UTF-8 bytes, the order S3 lists in (JS string order differs for astral characters). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Reads `key` from `store` as UTF-8 JSON validated by `schema`. A missing object stays an
 * ObjectNotFoundError; content that is not JSON or does not fit the schema throws an Error
 * naming the key and the store.
 */
export async function readJson<S extends z.ZodType>(store: ObjectStore, key: string, schema: S): Promise<z.output<S>> {
  const text = (await store.get(key)).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${key} in ${store.describe()} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`${key} in ${store.describe()} is not what was expected: ${issues}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** The lines of a stream (LF or CRLF), without their ends; the stream is destroyed when the reader stops, early or not. */
export async function* readLines(input: Readable): AsyncGenerator<string> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    yield* lines;
  } finally {
    lines.close();
    input.destroy();
  }
}

/**
 * An object's whole body, refused above `maxBytes`: from its announced `length` before a byte is
 * read (the connection dropped), or while reading should the length be absent or wrong. A read
 * error becomes "Failed to read <ref>: …".
 */
export async function readBoundedBody(body: Readable, ref: string, length: number | undefined, maxBytes: number | undefined): Promise<Buffer> {
  if (maxBytes !== undefined && length !== undefined && length > maxBytes) {
    // Dropping the connection beats downloading bytes we will refuse anyway.
    body.destroy();
    throw new ObjectTooLargeError(ref, length, maxBytes);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      total += buf.length;
      if (maxBytes !== undefined && total > maxBytes) {
        body.destroy();
        throw new ObjectTooLargeError(ref, total, maxBytes, true);
      }
      chunks.push(buf);
    }
  } catch (err) {
    if (err instanceof ObjectTooLargeError) throw err;
    throw new Error(`Failed to read ${ref}: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks, total);
}
