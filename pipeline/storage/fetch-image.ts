/**
 * Reads the bytes of one image or model ref: an absolute (or cwd-relative) local path, a file://
 * URL, or a remote URL of the store registry (s3://bucket/key). Size limits and missing objects
 * surface as the typed store errors; local paths outside `localRoots`, special files and remote
 * keys with `.`/`..` segments as ForbiddenPathError (local-roots.ts), before any read or network call.
 */
import path from 'node:path';
import { confinedStat, readConfinedFile } from './local-roots.js';
import { expectedUrls, parseRef, storeLabel } from './location.js';
import { type ByteRange, ObjectTooLargeError, ObjectTruncatedError } from './object-store.js';
import type { Stores } from './stores.js';

export { ForbiddenPathError, isForbiddenPath } from './local-roots.js';

export interface FetchLimits {
  /** Largest accepted object, bytes; larger ones fail with ObjectTooLargeError. */
  maxBytes?: number;
  /**
   * How long to keep retrying transient store failures (endpoint unreachable, 5xx, throttling,
   * timeouts) on top of the SDK's own retries before the image becomes a `fetch` error row.
   * Default 60 s: an endpoint restart must not turn a batch of good images into errors.
   */
  retryForMs?: number;
  /**
   * Folders local refs may be read from (the file's real path must lie below a root's real
   * path); `[]` reads nothing local. Absent: any local path (trusted callers only, such as the
   * model files of a config); special files (/proc, /sys, /dev, devices, FIFOs, sockets) are
   * refused either way.
   */
  localRoots?: readonly string[];
}

/** Fetches one ref's bytes; empty objects come back as empty buffers (decoding reports them). */
export async function fetchRef(ref: string, stores: Stores, limits: FetchLimits = {}): Promise<Buffer> {
  const parsed = parseRef(ref);
  switch (parsed.kind) {
    case 'remote':
      if (parsed.key === '' || parsed.key.endsWith('/'))
        throw new Error(`Invalid image ref ${JSON.stringify(ref)}: an ${storeLabel(parsed.scheme)} image ref needs a key, not a prefix`);
      return stores.read(parsed, { maxBytes: limits.maxBytes, retryForMs: limits.retryForMs });
    case 'unsupported':
      throw new Error(`Unsupported image ref ${JSON.stringify(ref)}: scheme "${parsed.scheme}://" (expected a local path or ${expectedUrls('key')})`);
    case 'local':
      if (parsed.path === '' || parsed.path.includes('\0')) throw new Error(`Invalid image ref ${JSON.stringify(ref)}`);
      return readConfinedFile(path.resolve(parsed.path), { roots: limits.localRoots, maxBytes: limits.maxBytes, ref });
  }
}

/**
 * Reads `range` of the object `ref` (a shard member) under the same rules as fetchRef: roots,
 * special files and `..` keys are refused before any read, a range over `maxBytes` is an
 * ObjectTooLargeError before any read, and an object that ends first is an ObjectTruncatedError.
 */
export async function fetchRange(ref: string, range: ByteRange, stores: Stores, limits: FetchLimits = {}): Promise<Buffer> {
  const parsed = parseObjectRef(ref);
  if (limits.maxBytes !== undefined && range.length > limits.maxBytes) {
    // Refused before a byte is read, but only once the ref itself was found allowed.
    if (parsed.kind === 'local') await confinedStat(parsed.path, { roots: limits.localRoots, ref });
    throw new ObjectTooLargeError(ref, range.length, limits.maxBytes);
  }
  if (parsed.kind === 'local') return readConfinedFile(parsed.path, { roots: limits.localRoots, maxBytes: limits.maxBytes, ref, range });
  const bytes = await stores.readRange(parsed, range.offset, range.offset + range.length, { retryForMs: limits.retryForMs });
  if (bytes.length < range.length) throw new ObjectTruncatedError(ref, range, range.offset + bytes.length);
  return bytes;
}

/** The size in bytes of the object `ref`, under fetchRef's rules (a Parquet file's footer is read from its end). */
export async function fetchSize(ref: string, stores: Stores, limits: Pick<FetchLimits, 'localRoots' | 'retryForMs'> = {}): Promise<number> {
  const parsed = parseObjectRef(ref);
  if (parsed.kind === 'local') return (await confinedStat(parsed.path, { roots: limits.localRoots, ref })).st.size;
  return stores.size(parsed, { retryForMs: limits.retryForMs });
}

/** An object ref as fetchRef reads it: a remote key (not a prefix) or a resolved local path. */
function parseObjectRef(ref: string): Exclude<ReturnType<typeof parseRef>, { kind: 'unsupported' }> {
  const parsed = parseRef(ref);
  switch (parsed.kind) {
    case 'remote':
      if (parsed.key === '' || parsed.key.endsWith('/'))
        throw new Error(`Invalid ref ${JSON.stringify(ref)}: an ${storeLabel(parsed.scheme)} ref needs a key, not a prefix`);
      return parsed;
    case 'unsupported':
      throw new Error(`Unsupported ref ${JSON.stringify(ref)}: scheme "${parsed.scheme}://" (expected a local path or ${expectedUrls('key')})`);
    case 'local':
      if (parsed.path === '' || parsed.path.includes('\0')) throw new Error(`Invalid ref ${JSON.stringify(ref)}`);
      return { kind: 'local', path: path.resolve(parsed.path) };
  }
}
