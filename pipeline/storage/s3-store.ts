/**
 * The S3 row of the store registry: ObjectStore over an S3 bucket + prefix, the S3Client
 * factory, S3's URL rules and transient-error test. Nothing outside pipeline/storage/ sees the SDK.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import type { z } from 'zod';
import { S3Settings } from '../../config/schema.js';
import { contentTypeOf } from './content-type.js';
import {
  checkRange,
  compareKeys,
  type GetOptions,
  InvalidKeyError,
  isObjectNotFound,
  isObjectTooLarge,
  type ListOptions,
  type ListPrefixesOptions,
  type ObjectInfo,
  ObjectNotFoundError,
  type ObjectStore,
  readBoundedBody,
} from './object-store.js';
import { DEFAULT_TRANSIENT_RETRY_MS, retryTransient } from './retry-transient.js';
import type { StoreConnection, StoreScheme } from './store-scheme.js';

export type S3SettingsInput = z.input<typeof S3Settings>;

/** `s3://bucket/key`, the form refs and messages name S3 objects by. */
function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

// Lenient on purpose: legacy and S3-compatible stores allow upper case and underscores,
// but anything outside this set is certainly a typo (spaces, '?', ':' ...).
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/** The S3 row of the store registry; the client is built from the `s3:` settings on first use. */
export const s3Scheme: StoreScheme = {
  scheme: 's3',
  label: 'S3',
  container: 'bucket',
  containerProblem: (name) =>
    BUCKET.test(name) && !name.includes('..') ? null : '(3-255 characters: letters, digits, ".", "-", "_"; starting and ending with a letter or digit)',
  connect(settings, borrowed): StoreConnection {
    const client = (borrowed as S3Client | undefined) ?? makeS3Client(S3Settings.parse(settings.s3 ?? {}));
    return {
      open: (bucket, prefix, opts = {}) => new S3Store({ client, bucket, prefix, pageSize: opts.pageSize }),
      isTransient: isTransientS3Error,
      close: () => {
        if (!borrowed) client.destroy();
      },
    };
  },
};

export interface S3ClientOptions {
  /** Total attempts per request, first try included (SDK retry strategy). Default 8. */
  maxAttempts?: number;
  /** `standard`: exponential backoff with jitter; `adaptive` adds client-side rate limiting on throttling. */
  retryMode?: 'standard' | 'adaptive';
  /** Give up connecting after this long (then retry). Default 10 s. */
  connectionTimeoutMs?: number;
  /** Abort a request whose socket is idle this long (then retry). Default 120 s. */
  socketTimeoutMs?: number;
  /** Explicit credentials, for tests and local emulators; production leaves this unset. */
  credentials?: S3ClientConfig['credentials'];
}

/**
 * Builds an S3Client from the config's S3 settings. Credentials come from the SDK default chain
 * (env, shared config/SSO, web identity, container/instance metadata) unless given explicitly.
 */
export function makeS3Client(settings: S3SettingsInput = {}, opts: S3ClientOptions = {}): S3Client {
  const custom = settings.endpoint !== undefined;
  return new S3Client({
    region: settings.region ?? 'us-east-1',
    endpoint: settings.endpoint,
    forcePathStyle: settings.forcePathStyle ?? false,
    // Eight attempts with the SDK's capped exponential backoff span roughly 10 s in the worst
    // case: enough to ride out an endpoint restart without hanging a job for minutes.
    maxAttempts: opts.maxAttempts ?? 8,
    retryMode: opts.retryMode ?? 'standard',
    requestHandler: {
      connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
      socketTimeout: opts.socketTimeoutMs ?? 120_000,
    },
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    // Since early 2025 the SDK adds CRC checksums to every upload and asks for them on download.
    // Many S3-compatible servers (older MinIO, Ceph RGW, several cloud vendors) reject or mangle
    // those requests, so with a custom endpoint only send checksums where the API requires them.
    // (s3rver 3.7 happens to work either way for the calls we make.)
    ...(custom ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
  });
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);

/** True for failures worth retrying: network errors, timeouts, 5xx and 429 answers (checked along the cause chain). */
export function isTransientS3Error(err: unknown): boolean {
  for (
    let e = err as { name?: string; code?: string; cause?: unknown; $metadata?: { httpStatusCode?: number } } | undefined, depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    if (isObjectNotFound(e) || isObjectTooLarge(e)) return false;
    const status = e.$metadata?.httpStatusCode;
    if (status !== undefined) return status >= 500 || status === 429;
    if ((e.code && NETWORK_CODES.has(e.code)) || e.name === 'TimeoutError' || e.name === 'RequestTimeout') return true;
  }
  return false;
}

/** True for S3's "no such key/bucket" answers (GetObject's NoSuchKey, HeadObject's bare 404). */
function isS3NotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.name === 'NoSuchBucket' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * Reads a whole S3 object, refusing it above `maxBytes` from ContentLength before reading the
 * body (and while reading, should the length be absent). Missing key or bucket → ObjectNotFoundError.
 */
async function getS3Object(client: S3Client, bucket: string, key: string, maxBytes?: number): Promise<Buffer> {
  const { ref, body, length } = await openS3Object(client, bucket, key);
  if (!body) return Buffer.alloc(0);
  return readBoundedBody(body, ref, length, maxBytes);
}

/** Opens an S3 object as a stream (no retries); missing key or bucket → ObjectNotFoundError before any byte is read. */
async function getS3Stream(client: S3Client, bucket: string, key: string): Promise<Readable> {
  return (await openS3Object(client, bucket, key)).body ?? Readable.from([]);
}

/**
 * Reads bytes [start, end) of an S3 object with a Range request (the range is checked by the
 * caller). Past the object's end S3 answers 416, which is an empty read here; a server that
 * ignores Range sends the whole object, of which only the range is kept and the rest not read.
 */
async function getS3Range(client: S3Client, bucket: string, key: string, start: number, end: number): Promise<Buffer> {
  // An empty range still asks for one byte, so a missing object is still an ObjectNotFoundError.
  const last = end > start ? end - 1 : start;
  let opened: Awaited<ReturnType<typeof openS3Object>>;
  try {
    opened = await openS3Object(client, bucket, key, `bytes=${start}-${last}`);
  } catch (err) {
    const cause = (err as { cause?: { name?: string; $metadata?: { httpStatusCode?: number } } }).cause;
    if (cause?.$metadata?.httpStatusCode === 416 || cause?.name === 'InvalidRange') return Buffer.alloc(0);
    throw err;
  }
  const { ref, body, contentRange } = opened;
  if (!body) return Buffer.alloc(0);
  // `bytes first-last/size`: s3rver answers a range of an empty object with a bogus 206 whose
  // body never comes, so the size it states decides before any byte is read.
  const size = Number(/\/(\d+)$/.exec(contentRange ?? '')?.[1] ?? Number.NaN);
  if (start >= size) {
    body.destroy();
    return Buffer.alloc(0);
  }
  let skip = contentRange === undefined ? start : 0;
  const want = Math.min(end, Number.isNaN(size) ? end : size) - start;
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      if (skip > 0) {
        const dropped = Math.min(skip, buf.length);
        buf = buf.subarray(dropped);
        skip -= dropped;
      }
      const kept = buf.subarray(0, want - total);
      if (kept.length > 0) chunks.push(kept);
      total += kept.length;
      if (total >= want) break;
    }
  } catch (err) {
    throw new Error(`Failed to read ${ref}: ${(err as Error).message}`, { cause: err });
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks, total);
}

/** Sends GetObject (of `range`, when given): the body (absent for some empty objects), its length and Content-Range (absent when the server ignored the range), or the typed not-found error. */
async function openS3Object(
  client: S3Client,
  bucket: string,
  key: string,
  range?: string,
): Promise<{ ref: string; body: Readable | undefined; length: number | undefined; contentRange: string | undefined }> {
  const ref = s3Url(bucket, key);
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
    return { ref, body: res.Body as Readable | undefined, length: res.ContentLength, contentRange: res.ContentRange };
  } catch (err) {
    if (isS3NotFound(err)) {
      const detail = (err as Error).name === 'NoSuchBucket' ? `bucket "${bucket}" does not exist` : undefined;
      throw new ObjectNotFoundError(ref, detail, { cause: err });
    }
    throw new Error(`Failed to read ${ref}: ${(err as Error).message}`, { cause: err });
  }
}

/** Lists every object under `prefix` (raw string prefix; keys after `startAfter` when given), following ListObjectsV2 continuation tokens. */
async function* listS3Objects(
  client: S3Client,
  bucket: string,
  prefix: string,
  opts: { pageSize?: number; startAfter?: string } = {},
): AsyncGenerator<{ key: string; size: number }> {
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix || undefined,
          ContinuationToken: token,
          MaxKeys: opts.pageSize,
          StartAfter: token ? undefined : opts.startAfter,
        }),
      );
    } catch (err) {
      if ((err as Error).name === 'NoSuchBucket') {
        throw new ObjectNotFoundError(s3Url(bucket, prefix), `bucket "${bucket}" does not exist`, { cause: err });
      }
      throw new Error(`Failed to list ${s3Url(bucket, prefix)}: ${(err as Error).message}`, { cause: err });
    }
    for (const obj of page.Contents ?? []) {
      if (obj.Key !== undefined) yield { key: obj.Key, size: obj.Size ?? 0 };
    }
    // Some S3-compatible servers omit IsTruncated; a token alone means there is more.
    token = page.IsTruncated === false ? undefined : page.NextContinuationToken;
  } while (token);
}

/** The CommonPrefixes of a delimiter listing of `prefix` (ListObjectsV2 with Delimiter), from at most `maxPages` pages. */
async function listS3Prefixes(
  client: S3Client,
  bucket: string,
  prefix: string,
  opts: { delimiter: string; maxPages: number; pageSize?: number },
): Promise<string[]> {
  const prefixes: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, Delimiter: opts.delimiter, ContinuationToken: token, MaxKeys: opts.pageSize }),
      );
    } catch (err) {
      if ((err as Error).name === 'NoSuchBucket') {
        throw new ObjectNotFoundError(s3Url(bucket, prefix), `bucket "${bucket}" does not exist`, { cause: err });
      }
      throw new Error(`Failed to list ${s3Url(bucket, prefix)}: ${(err as Error).message}`, { cause: err });
    }
    for (const p of page.CommonPrefixes ?? []) if (p.Prefix !== undefined) prefixes.push(p.Prefix);
    pages++;
    token = page.IsTruncated === false ? undefined : page.NextContinuationToken;
  } while (token && pages < opts.maxPages);
  return prefixes;
}

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix the store lives under; normalised to '' or ending with '/'. */
  prefix?: string;
  /** ListObjectsV2 MaxKeys (S3 caps it at 1000); smaller pages are only useful in tests. */
  pageSize?: number;
  /** How long put() retries transient failures (default DEFAULT_TRANSIENT_RETRY_MS). */
  retryForMs?: number;
}

/** ObjectStore over `s3://bucket/prefix/`. Keys are data here: no path semantics are applied. */
export class S3Store implements ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  private readonly pageSize: number | undefined;
  private readonly retryForMs: number;

  /** The client is borrowed: the caller owns it and destroys it. */
  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    const prefix = opts.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.pageSize = opts.pageSize;
    this.retryForMs = opts.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS;
  }

  private fullKey(key: string): string {
    if (typeof key !== 'string' || key === '') throw new InvalidKeyError(String(key), 'empty key');
    return this.prefix + key;
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    return getS3Object(this.client, this.bucket, this.fullKey(key), opts.maxBytes);
  }

  async getStream(key: string): Promise<Readable> {
    return getS3Stream(this.client, this.bucket, this.fullKey(key));
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    const full = this.fullKey(key);
    checkRange(s3Url(this.bucket, full), start, end);
    return getS3Range(this.client, this.bucket, full, start, end);
  }

  async put(key: string, body: Buffer | string): Promise<void> {
    const full = this.fullKey(key);
    // A Buffer with an explicit length: the SDK takes an empty string for a stream of unknown length.
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    try {
      // Result parts are written here: a write lost to a short outage would fail the whole batch.
      await retryTransient(
        () =>
          this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: bytes, ContentLength: bytes.length, ContentType: contentTypeOf(key) })),
        this.retryForMs,
        isTransientS3Error,
      );
    } catch (err) {
      throw new Error(`Failed to write ${s3Url(this.bucket, full)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * `If-None-Match: *` makes the write conditional on S3 and on stores that implement it (412 →
   * false). Stores that ignore the header (older MinIO, s3rver) would overwrite, so an object
   * already present is looked for first; between that look and the write, such a store leaves a
   * window in which two writers can both win.
   */
  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    const full = this.fullKey(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: full }));
      return false;
    } catch (err) {
      if (!isS3NotFound(err) || (err as { name?: string }).name === 'NoSuchBucket')
        throw new Error(`Failed to read ${s3Url(this.bucket, full)}: ${(err as Error).message}`, { cause: err });
    }
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    try {
      await retryTransient(
        () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: full,
              Body: bytes,
              ContentLength: bytes.length,
              ContentType: contentTypeOf(key),
              IfNoneMatch: '*',
            }),
          ),
        this.retryForMs,
        isTransientS3Error,
      );
      return true;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.$metadata?.httpStatusCode === 412 || e.name === 'PreconditionFailed') return false;
      throw new Error(`Failed to write ${s3Url(this.bucket, full)}: ${(err as Error).message}`, { cause: err });
    }
  }

  async putStream(key: string, chunks: AsyncIterable<Buffer | string>): Promise<void> {
    const full = this.fullKey(key);
    // Multipart upload: parts of 8 MiB are sent as they fill, so memory stays bounded.
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: full, Body: Readable.from(chunks), ContentType: contentTypeOf(key) },
      partSize: 8 * 1024 * 1024,
      queueSize: 2,
    });
    try {
      await upload.done();
    } catch (err) {
      throw new Error(`Failed to write ${s3Url(this.bucket, full)}: ${(err as Error).message}`, { cause: err });
    }
  }

  async *list(prefix = '', opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const startAfter = opts.after === undefined ? undefined : this.prefix + opts.after;
    for await (const obj of listS3Objects(this.client, this.bucket, this.prefix + prefix, { pageSize: this.pageSize, startAfter })) {
      yield { key: obj.key.slice(this.prefix.length), size: obj.size };
    }
  }

  async listPrefixes(prefix: string, opts: ListPrefixesOptions = {}): Promise<string[]> {
    const found = await listS3Prefixes(this.client, this.bucket, this.prefix + prefix, {
      delimiter: opts.delimiter ?? '/',
      maxPages: opts.maxPages ?? Number.POSITIVE_INFINITY,
      pageSize: this.pageSize,
    });
    return found.map((p) => p.slice(this.prefix.length)).sort(compareKeys);
  }

  async delete(key: string): Promise<void> {
    const full = this.fullKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: full }));
    } catch (err) {
      // S3 answers 204 for a missing key, so any error here (a missing bucket included) is real.
      throw new Error(`Failed to delete ${s3Url(this.bucket, full)}: ${(err as Error).message}`, { cause: err });
    }
  }

  describe(): string {
    return s3Url(this.bucket, this.prefix);
  }
}
