/**
 * Reads the bytes of one image ref: an absolute (or cwd-relative) local path, a file:// URL,
 * or s3://bucket/key. Size limits and missing objects surface as the typed store errors; local
 * paths outside `localRoots`, special files and S3 keys with `.`/`..` segments as
 * ForbiddenPathError (local-roots.ts), before any read or network call.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { readConfinedFile } from './local-roots.js';
import { parseRef } from './location.js';
import { DEFAULT_TRANSIENT_RETRY_MS, getS3Object, retryTransient } from './s3-store.js';

export { ForbiddenPathError, isForbiddenPath } from './local-roots.js';

export interface FetchDeps {
  /** Called only for s3:// refs, so local-only runs never build a client. */
  s3: () => S3Client;
}

export interface FetchLimits {
  /** Largest accepted object, bytes; larger ones fail with ObjectTooLargeError. */
  maxBytes?: number;
  /**
   * How long to keep retrying transient S3 failures (endpoint unreachable, 5xx, throttling,
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
export async function fetchRef(ref: string, deps: FetchDeps, limits: FetchLimits = {}): Promise<Buffer> {
  const parsed = parseRef(ref);
  switch (parsed.kind) {
    case 's3': {
      const { bucket, key } = parsed;
      if (key === '' || key.endsWith('/')) throw new Error(`Invalid image ref ${JSON.stringify(ref)}: an S3 image ref needs a key, not a prefix`);
      return retryTransient(() => getS3Object(deps.s3(), bucket, key, limits.maxBytes), limits.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS);
    }
    case 'unsupported':
      throw new Error(`Unsupported image ref ${JSON.stringify(ref)}: scheme "${parsed.scheme}://" (expected a local path or s3://bucket/key)`);
    case 'local':
      if (parsed.path === '' || parsed.path.includes('\0')) throw new Error(`Invalid image ref ${JSON.stringify(ref)}`);
      return readConfinedFile(path.resolve(parsed.path), { roots: limits.localRoots, maxBytes: limits.maxBytes, ref });
  }
}
