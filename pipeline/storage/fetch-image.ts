/**
 * Reads the bytes of one image or model ref: an absolute (or cwd-relative) local path, a file://
 * URL, or a remote URL of the store registry (s3://bucket/key). Size limits and missing objects
 * surface as the typed store errors; local paths outside `localRoots`, special files and remote
 * keys with `.`/`..` segments as ForbiddenPathError (local-roots.ts), before any read or network call.
 */
import path from 'node:path';
import { readConfinedFile } from './local-roots.js';
import { expectedUrls, parseRef, storeLabel } from './location.js';
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
