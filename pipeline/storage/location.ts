/**
 * Where objects live: an S3 bucket + key prefix, or a local directory. Parsed from the strings
 * users type (`s3://bucket/some/prefix/`, `./out`, `file:///data/out`).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Location = { kind: 's3'; bucket: string; prefix: string } | { kind: 'local'; path: string };

/** A parsed `s3://bucket/key` URL; `key` is raw (may be empty or end with '/'). */
export interface S3Url {
  bucket: string;
  key: string;
}

// Anything that looks like `scheme://`; a bare `C:` or `name:thing` stays a local path.
const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;
// Lenient on purpose: legacy and S3-compatible stores allow upper case and underscores,
// but anything outside this set is certainly a typo (spaces, '?', ':' ...).
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/** True when `s` is written as an S3 URL (`s3://...`, any case). */
export function isS3Url(s: string): boolean {
  return /^s3:/i.test(s);
}

/** Splits `s3://bucket/key` into bucket and raw key; throws a clear error on malformed input. */
export function parseS3Url(s: string): S3Url {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/is.exec(s);
  if (!m) throw new Error(`Malformed S3 URL ${JSON.stringify(s)}: expected s3://bucket/key`);
  const bucket = m[1] ?? '';
  const key = m[2] ?? '';
  if (bucket === '') throw new Error(`Malformed S3 URL ${JSON.stringify(s)}: the bucket name is empty`);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new Error(
      `Malformed S3 URL ${JSON.stringify(s)}: invalid bucket name ${JSON.stringify(bucket)} ` +
        '(3-255 characters: letters, digits, ".", "-", "_"; starting and ending with a letter or digit)',
    );
  }
  if (key.includes('\0')) throw new Error(`Malformed S3 URL ${JSON.stringify(s)}: the key contains a NUL character`);
  return { bucket, key };
}

/** Formats an S3 URL back from its parts. */
export function formatS3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/**
 * Parses a location string. S3 prefixes are folder-like: normalised to '' or to end with '/',
 * so `s3://b/photos` never matches `photos2/...`. Local paths are resolved against `cwd`.
 */
export function parseLocation(s: string, cwd: string = process.cwd()): Location {
  if (typeof s !== 'string' || s.trim() === '') throw new Error('Empty location: expected s3://bucket/prefix or a local path');
  if (isS3Url(s)) {
    const { bucket, key } = parseS3Url(s);
    const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
    return { kind: 's3', bucket, prefix };
  }
  const scheme = SCHEME.exec(s)?.[1]?.toLowerCase();
  if (scheme === 'file') {
    let p: string;
    try {
      p = fileURLToPath(s);
    } catch (err) {
      throw new Error(`Malformed file URL ${JSON.stringify(s)}: ${(err as Error).message}`);
    }
    return { kind: 'local', path: path.resolve(p) };
  }
  if (scheme !== undefined) {
    throw new Error(`Unsupported location ${JSON.stringify(s)}: scheme "${scheme}://" (expected s3://bucket/prefix or a local path)`);
  }
  if (s.includes('\0')) throw new Error(`Invalid local path ${JSON.stringify(s)}: contains a NUL character`);
  return { kind: 'local', path: path.resolve(cwd, s) };
}

/** The canonical string for a location (`s3://bucket/prefix/` or an absolute path). */
export function formatLocation(loc: Location): string {
  return loc.kind === 's3' ? formatS3Url(loc.bucket, loc.prefix) : loc.path;
}
