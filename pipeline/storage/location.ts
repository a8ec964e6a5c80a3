/**
 * Where objects live: a remote container + key prefix (`s3://bucket/some/prefix/`, any scheme of
 * the store registry) or a local directory (`./out`, `file:///data/out`). The one place that
 * parses and formats the strings users type.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CascadeError } from '../../config/errors.js';
import { ForbiddenPathError } from './local-roots.js';
import { STORE_SCHEMES, storeScheme } from './store-registry.js';

/** A remote location: `scheme` is a registry row's, `prefix` is '' or ends with '/'. */
export interface RemoteLocation {
  kind: 'remote';
  scheme: string;
  bucket: string;
  prefix: string;
}

export type Location = RemoteLocation | { kind: 'local'; path: string };

/** A parsed remote URL; `key` is raw (may be empty or end with '/'). */
export interface RemoteUrl {
  scheme: string;
  bucket: string;
  key: string;
}

// Anything that looks like `scheme://`; a bare `C:` or `name:thing` stays a local path.
const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;
// The scheme of a string written as a URL of some store (`s3:...`, any case), `//` or not.
const SCHEME_PREFIX = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/** True when `s` is written as an S3 URL (`s3://...`, any case): the refs that S3-only consumers (Ground Truth) read. */
export function isS3Url(s: string): boolean {
  return /^s3:/i.test(s);
}

/** The registry scheme `s` is written in (`s3` for `S3://...`), or undefined for local paths and unknown schemes. */
export function remoteScheme(s: string): string | undefined {
  const scheme = SCHEME_PREFIX.exec(s)?.[1]?.toLowerCase();
  return scheme !== undefined && storeScheme(scheme) ? scheme : undefined;
}

/** True when `s` names an object or prefix of a registered remote store. */
export function isRemoteUrl(s: string): boolean {
  return remoteScheme(s) !== undefined;
}

/**
 * Splits `<scheme>://bucket/key` (a registered scheme) into its parts; throws a clear error on
 * malformed input. A key with a `.` or `..` segment is refused (ForbiddenPathError): HTTP clients
 * and servers fold those segments, so the request would name another object, bucket or host than the URL.
 */
export function parseRemoteUrl(s: string): RemoteUrl {
  const scheme = remoteScheme(s);
  const row = scheme === undefined ? undefined : storeScheme(scheme);
  if (scheme === undefined || !row) throw new CascadeError(`Not a store URL ${JSON.stringify(s)}: expected ${expectedUrls('key')}`);
  const m = new RegExp(`^${scheme.replace(/[+.]/g, '\\$&')}://([^/]*)(?:/(.*))?$`, 'is').exec(s);
  const what = `Malformed ${row.label} URL ${JSON.stringify(s)}`;
  if (!m) throw new CascadeError(`${what}: expected ${scheme}://${row.container}/key`);
  const bucket = m[1] ?? '';
  const key = m[2] ?? '';
  if (bucket === '') throw new CascadeError(`${what}: the ${row.container} name is empty`);
  const problem = row.containerProblem(bucket);
  if (problem !== null) throw new CascadeError(`${what}: invalid ${row.container} name ${JSON.stringify(bucket)} ${problem}`);
  if (key.includes('\0')) throw new CascadeError(`${what}: the key contains a NUL character`);
  const dots = key.split('/').find((seg) => seg === '.' || seg === '..');
  if (dots !== undefined) throw new ForbiddenPathError(s, `is a malformed ${row.label} URL: the key has a '${dots}' segment`);
  const other = row.keyProblem?.(key) ?? null;
  if (other !== null) throw new ForbiddenPathError(s, `is a malformed ${row.label} URL: the key has ${other}`);
  return { scheme, bucket, key };
}

/** Formats a remote URL back from its parts. */
export function formatRemoteUrl(u: RemoteUrl): string {
  return `${u.scheme}://${u.bucket}/${u.key}`;
}

/** How messages name the accepted remote URLs: `s3://bucket/key` (`what` = key or prefix), joined with "or". */
export function expectedUrls(what: 'key' | 'prefix'): string {
  return STORE_SCHEMES.map((r) => `${r.scheme}://${r.container}/${what}`).join(' or ');
}

/** The label of a remote URL's store (`S3`), for messages. */
export function storeLabel(scheme: string): string {
  return storeScheme(scheme)?.label ?? scheme;
}

/**
 * What a ref string names, by its scheme: a remote object or prefix (raw key), a local path (a
 * file:// URL already converted; a plain path as written, not resolved), or a scheme nobody
 * reads. Callers add their own rules (key or prefix, resolving, NUL checks) and messages.
 */
export type Ref = ({ kind: 'remote' } & RemoteUrl) | { kind: 'local'; path: string } | { kind: 'unsupported'; scheme: string };

/**
 * The one place that tells store URLs (`s3://bucket/key`), `file:///path`, `other://...` and
 * plain paths apart (a bare `C:` or `name:thing` is a plain path). Malformed store and file URLs throw.
 */
export function parseRef(s: string): Ref {
  if (isRemoteUrl(s)) return { kind: 'remote', ...parseRemoteUrl(s) };
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
 * Parses a location string. Remote prefixes are folder-like: normalised to '' or to end with
 * '/', so `s3://b/photos` never matches `photos2/...`. Local paths are resolved against `cwd`.
 */
export function parseLocation(s: string, cwd: string = process.cwd()): Location {
  if (typeof s !== 'string' || s.trim() === '') throw new CascadeError(`Empty location: expected ${expectedUrls('prefix')} or a local path`);
  const ref = parseRef(s);
  switch (ref.kind) {
    case 'remote':
      return { kind: 'remote', scheme: ref.scheme, bucket: ref.bucket, prefix: ref.key === '' || ref.key.endsWith('/') ? ref.key : `${ref.key}/` };
    case 'unsupported':
      throw new CascadeError(`Unsupported location ${JSON.stringify(s)}: scheme "${ref.scheme}://" (expected ${expectedUrls('prefix')} or a local path)`);
    case 'local':
      if (ref.path.includes('\0')) throw new CascadeError(`Invalid local path ${JSON.stringify(s)}: contains a NUL character`);
      return { kind: 'local', path: path.resolve(cwd, ref.path) };
  }
}

/** The canonical string for a location (`s3://bucket/prefix/` or an absolute path). */
export function formatLocation(loc: Location): string {
  return loc.kind === 'remote' ? formatRemoteUrl({ scheme: loc.scheme, bucket: loc.bucket, key: loc.prefix }) : loc.path;
}
