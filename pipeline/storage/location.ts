/**
 * Where objects live: an S3 bucket + key prefix, or a local directory. Parsed from the strings
 * users type (`s3://bucket/some/prefix/`, `./out`, `file:///data/out`).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CascadeError } from '../../config/errors.js';
import { ForbiddenPathError } from './local-roots.js';

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

/**
 * Splits `s3://bucket/key` into bucket and raw key; throws a clear error on malformed input.
 * A key with a `.` or `..` segment is refused (ForbiddenPathError): HTTP clients and servers fold
 * those segments, so the request would name another object, bucket or host than the URL.
 */
export function parseS3Url(s: string): S3Url {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/is.exec(s);
  if (!m) throw new CascadeError(`Malformed S3 URL ${JSON.stringify(s)}: expected s3://bucket/key`);
  const bucket = m[1] ?? '';
  const key = m[2] ?? '';
  if (bucket === '') throw new CascadeError(`Malformed S3 URL ${JSON.stringify(s)}: the bucket name is empty`);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new CascadeError(
      `Malformed S3 URL ${JSON.stringify(s)}: invalid bucket name ${JSON.stringify(bucket)} ` +
        '(3-255 characters: letters, digits, ".", "-", "_"; starting and ending with a letter or digit)',
    );
  }
  if (key.includes('\0')) throw new CascadeError(`Malformed S3 URL ${JSON.stringify(s)}: the key contains a NUL character`);
  const dots = key.split('/').find((seg) => seg === '.' || seg === '..');
  if (dots !== undefined) throw new ForbiddenPathError(s, `is a malformed S3 URL: the key has a '${dots}' segment`);
  return { bucket, key };
}

/** Formats an S3 URL back from its parts. */
export function formatS3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/**
 * What a ref string names, by its scheme: an S3 object or prefix (raw key), a local path (a
 * file:// URL already converted; a plain path as written, not resolved), or a scheme nobody
 * reads. Callers add their own rules (key or prefix, resolving, NUL checks) and messages.
 */
export type Ref = { kind: 's3'; bucket: string; key: string } | { kind: 'local'; path: string } | { kind: 'unsupported'; scheme: string };

/**
 * The one place that tells `s3://bucket/key`, `file:///path`, `other://...` and plain paths
 * apart (a bare `C:` or `name:thing` is a plain path). Malformed S3 and file URLs throw.
 */
export function parseRef(s: string): Ref {
  if (isS3Url(s)) return { kind: 's3', ...parseS3Url(s) };
  const scheme = SCHEME.exec(s)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'local', path: s };
  if (scheme !== 'file') return { kind: 'unsupported', scheme };
  try {
    return { kind: 'local', path: fileURLToPath(s) };
  } catch (err) {
    throw new CascadeError(`Malformed file URL ${JSON.stringify(s)}: ${(err as Error).message}`);
  }
}

/**
 * Parses a location string. S3 prefixes are folder-like: normalised to '' or to end with '/',
 * so `s3://b/photos` never matches `photos2/...`. Local paths are resolved against `cwd`.
 */
export function parseLocation(s: string, cwd: string = process.cwd()): Location {
  if (typeof s !== 'string' || s.trim() === '') throw new CascadeError('Empty location: expected s3://bucket/prefix or a local path');
  const ref = parseRef(s);
  switch (ref.kind) {
    case 's3':
      return { kind: 's3', bucket: ref.bucket, prefix: ref.key === '' || ref.key.endsWith('/') ? ref.key : `${ref.key}/` };
    case 'unsupported':
      throw new CascadeError(`Unsupported location ${JSON.stringify(s)}: scheme "${ref.scheme}://" (expected s3://bucket/prefix or a local path)`);
    case 'local':
      if (ref.path.includes('\0')) throw new CascadeError(`Invalid local path ${JSON.stringify(s)}: contains a NUL character`);
      return { kind: 'local', path: path.resolve(cwd, ref.path) };
  }
}

/** The canonical string for a location (`s3://bucket/prefix/` or an absolute path). */
export function formatLocation(loc: Location): string {
  return loc.kind === 's3' ? formatS3Url(loc.bucket, loc.prefix) : loc.path;
}
