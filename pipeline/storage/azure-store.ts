/**
 * The Azure Blob row of the store registry: ObjectStore over a container + prefix
 * (`az://container/prefix/`), Azure's container-name rule and transient-error test, and the
 * BlobServiceClient factory that finds the account's credentials.
 */
import {
  AnonymousCredential,
  BlobServiceClient,
  type ContainerClient,
  type ContainerListBlobFlatSegmentResponse,
  StorageSharedKeyCredential,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { Readable } from 'node:stream';
import type { z } from 'zod';
import { CascadeError } from '../../config/errors.js';
import { AzureSettings } from '../../config/schema.js';
import { contentTypeOf } from './content-type.js';
import { ForbiddenPathError } from './local-roots.js';
import {
  checkRange,
  compareKeys,
  type GetOptions,
  InvalidKeyError,
  isObjectNotFound,
  isObjectTooLarge,
  type ListOptions,
  type ObjectInfo,
  ObjectNotFoundError,
  type ObjectStore,
  readBoundedBody,
} from './object-store.js';
import { DEFAULT_TRANSIENT_RETRY_MS, retryTransient } from './retry-transient.js';
import type { StoreConnection, StoreScheme } from './store-scheme.js';

export type AzureSettingsInput = z.input<typeof AzureSettings>;

// Azure's rule: 3-63 characters, lower-case letters, digits and single hyphens, starting and ending with a letter or digit.
const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;
const CONTAINER_RULE = '3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit';
const BACKSLASH = "a '\\' (read as '/' in a URL)";
/** Azure's limit on a blob name, in characters. */
const MAX_BLOB_NAME = 1024;

/**
 * The Azure Blob row of the store registry: `az://container/prefix`, the account and its
 * credentials from the `azure:` settings or the environment (azureCredentials), read on first use.
 */
export const azureScheme: StoreScheme = {
  scheme: 'az',
  label: 'Azure Blob',
  container: 'container',
  containerProblem: (name) => (CONTAINER.test(name) ? null : `(${CONTAINER_RULE})`),
  keyProblem: (key) => (key.includes('\\') ? BACKSLASH : null),
  connect(settings, borrowed): StoreConnection {
    const client = (borrowed as BlobServiceClient | undefined) ?? makeAzureClient(AzureSettings.parse(settings.azure ?? {}));
    return {
      open: (container, prefix, opts = {}) => new AzureBlobStore({ client, container, prefix, pageSize: opts.pageSize }),
      isTransient: isTransientAzureError,
      // The SDK's HTTP client keeps no socket open between requests that needs closing.
      close: () => {},
    };
  },
};

/** Formats an az:// URL back from its parts. */
export function formatAzUrl(container: string, key: string): string {
  return `az://${container}/${key}`;
}

/**
 * What in a blob name would make its request name another blob, or undefined: the SDK builds
 * URLs with WHATWG URL, which folds `.`/`..` segments and reads `\` as `/`.
 */
function hostileSegment(name: string): string | undefined {
  if (name.includes('\\')) return BACKSLASH;
  const dots = name.split('/').find((seg) => seg === '.' || seg === '..');
  return dots === undefined ? undefined : `a '${dots}' segment`;
}

/** Where a client's account and secret come from; secrets stay inside, never in messages. */
export type AzureCredentials =
  | { kind: 'connection-string'; connectionString: string }
  | { kind: 'account-key'; account: string; accountKey: string; endpoint: string }
  | { kind: 'sas'; account: string; sasToken: string; endpoint: string };

const NO_CREDENTIALS =
  'az:// needs Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, ' +
  'or azure: {account, accountKey | sasToken} in the config';

/**
 * The credentials for `settings` (the config's `azure`) and `env`. An account in the config wins
 * (its key or SAS token from the config, else from AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN);
 * without one, AZURE_STORAGE_CONNECTION_STRING, then AZURE_STORAGE_ACCOUNT with a key or SAS token.
 */
export function azureCredentials(settings: AzureSettingsInput = {}, env: NodeJS.ProcessEnv = process.env): AzureCredentials {
  const connectionString = env.AZURE_STORAGE_CONNECTION_STRING?.trim();
  if (settings.account === undefined && connectionString) return { kind: 'connection-string', connectionString };
  const account = settings.account ?? env.AZURE_STORAGE_ACCOUNT?.trim();
  if (!account) throw new CascadeError(NO_CREDENTIALS);
  const endpoint = (settings.endpoint ?? `https://${account}.blob.core.windows.net`).replace(/\/+$/, '');
  const fromConfig = settings.accountKey !== undefined || settings.sasToken !== undefined;
  const accountKey = fromConfig ? settings.accountKey : env.AZURE_STORAGE_KEY?.trim() || undefined;
  const sasToken = fromConfig ? settings.sasToken : env.AZURE_STORAGE_SAS_TOKEN?.trim() || undefined;
  if (accountKey) return { kind: 'account-key', account, accountKey, endpoint };
  if (sasToken) return { kind: 'sas', account, sasToken: sasToken.replace(/^\?/, ''), endpoint };
  throw new CascadeError(`${NO_CREDENTIALS} (account "${account}" has no key or SAS token)`);
}

export interface AzureClientOptions {
  /** Where credentials not in the settings are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Attempts per request, first try included (SDK retry policy). Default 4. */
  maxTries?: number;
  /** Abort one try of a request after this long (then retry). Default 120 s. */
  tryTimeoutMs?: number;
}

/** Builds a BlobServiceClient for the account that `settings` and the environment name (azureCredentials). */
export function makeAzureClient(settings: AzureSettingsInput = {}, opts: AzureClientOptions = {}): BlobServiceClient {
  const creds = azureCredentials(settings, opts.env);
  const pipeline: StoragePipelineOptions = {
    // Short SDK backoff: retryTransient rides out longer outages without holding a request open.
    retryOptions: { maxTries: opts.maxTries ?? 4, retryDelayInMs: 200, maxRetryDelayInMs: 2_000, tryTimeoutInMs: opts.tryTimeoutMs ?? 120_000 },
  };
  switch (creds.kind) {
    case 'connection-string':
      try {
        return BlobServiceClient.fromConnectionString(creds.connectionString, pipeline);
      } catch {
        // The SDK's own message may quote the string, key included.
        throw new CascadeError(
          'AZURE_STORAGE_CONNECTION_STRING is not a valid Azure Storage connection string (it needs AccountName and AccountKey or SharedAccessSignature)',
        );
      }
    case 'account-key':
      return new BlobServiceClient(creds.endpoint, new StorageSharedKeyCredential(creds.account, creds.accountKey), pipeline);
    case 'sas':
      return new BlobServiceClient(`${creds.endpoint}?${creds.sasToken}`, new AnonymousCredential(), pipeline);
  }
}

// REQUEST_SEND_ERROR: the Azure pipeline's code for a request that got no answer.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'REQUEST_SEND_ERROR',
]);

/** True for failures worth retrying: network errors, timeouts, 5xx and 429 answers (checked along the cause chain). */
export function isTransientAzureError(err: unknown): boolean {
  for (let e = err as (RestErrorShape & { name?: string; cause?: unknown }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (isObjectNotFound(e) || isObjectTooLarge(e)) return false;
    if (e.statusCode !== undefined) return e.statusCode >= 500 || e.statusCode === 429;
    if ((e.code && NETWORK_CODES.has(e.code)) || e.name === 'TimeoutError') return true;
  }
  return false;
}

export interface AzureBlobStoreOptions {
  client: BlobServiceClient;
  container: string;
  /** Blob name prefix the store lives under; normalised to '' or ending with '/'. */
  prefix?: string;
  /** List page size (Azure caps it at 5000); smaller pages are only useful in tests. */
  pageSize?: number;
  /** How long reads, writes, listings and deletes retry transient failures (default DEFAULT_TRANSIENT_RETRY_MS). */
  retryForMs?: number;
}

/** Unwrapped Azure SDK error fields (RestError). */
type RestErrorShape = { statusCode?: number; code?: string; details?: { errorCode?: string } };

function errorCodeOf(err: unknown): string | undefined {
  const e = err as RestErrorShape | null;
  return e?.details?.errorCode ?? e?.code;
}

/** ObjectStore over `az://container/prefix/`. Keys are data, but never ones a URL would rewrite (see hostileSegment). */
export class AzureBlobStore implements ObjectStore {
  readonly container: string;
  readonly prefix: string;
  private readonly client: ContainerClient;
  private readonly pageSize: number | undefined;
  private readonly retryForMs: number;

  /** The service client is borrowed: it holds no resource that needs closing. */
  constructor(opts: AzureBlobStoreOptions) {
    if (!CONTAINER.test(opts.container)) throw new CascadeError(`Invalid Azure container name ${JSON.stringify(opts.container)} (${CONTAINER_RULE})`);
    this.container = opts.container;
    const prefix = opts.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    const bad = prefix.includes('\0') ? 'a NUL character' : hostileSegment(prefix);
    if (bad !== undefined) throw new ForbiddenPathError(formatAzUrl(this.container, this.prefix), `is a malformed Azure location: the prefix has ${bad}`);
    this.client = opts.client.getContainerClient(opts.container);
    this.pageSize = opts.pageSize;
    this.retryForMs = opts.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS;
  }

  private fullKey(key: string): string {
    if (typeof key !== 'string' || key === '') throw new InvalidKeyError(String(key), 'empty key');
    if (key.includes('\0')) throw new InvalidKeyError(key, 'NUL characters are not allowed');
    const bad = hostileSegment(key);
    if (bad !== undefined) throw new InvalidKeyError(key, `${bad} is not allowed`);
    const full = this.prefix + key;
    if (full.length > MAX_BLOB_NAME) throw new InvalidKeyError(key, `the blob name would be longer than Azure's ${MAX_BLOB_NAME} characters`);
    return full;
  }

  private ref(full: string): string {
    return formatAzUrl(this.container, full);
  }

  /** The typed error for a failed read: not found (naming a missing container), or a wrapped one. */
  private readError(err: unknown, full: string): Error {
    const status = (err as RestErrorShape | null)?.statusCode;
    if (status === 404) {
      const detail = errorCodeOf(err) === 'ContainerNotFound' ? `container "${this.container}" does not exist` : undefined;
      return new ObjectNotFoundError(this.ref(full), detail, { cause: err });
    }
    return new Error(`Failed to read ${this.ref(full)}: ${(err as Error).message}`, { cause: err });
  }

  private writeError(err: unknown, full: string): Error {
    const detail = errorCodeOf(err) === 'ContainerNotFound' ? `container "${this.container}" does not exist` : (err as Error).message;
    return new Error(`Failed to write ${this.ref(full)}: ${detail}`, { cause: err });
  }

  /** Sends Get Blob: the body and its announced length (known before any byte is read). */
  private async open(full: string): Promise<{ body: Readable; length: number | undefined }> {
    try {
      const res = await this.client.getBlockBlobClient(full).download();
      return { body: (res.readableStreamBody as Readable | undefined) ?? Readable.from([]), length: res.contentLength };
    } catch (err) {
      throw this.readError(err, full);
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const full = this.fullKey(key);
    const { maxBytes } = opts;
    return retryTransient(
      async () => {
        const { body, length } = await this.open(full);
        return readBoundedBody(body, this.ref(full), length, maxBytes);
      },
      this.retryForMs,
      isTransientAzureError,
    );
  }

  async getStream(key: string): Promise<Readable> {
    const full = this.fullKey(key);
    return (await retryTransient(() => this.open(full), this.retryForMs, isTransientAzureError)).body;
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    const full = this.fullKey(key);
    checkRange(this.ref(full), start, end);
    return retryTransient(
      async () => {
        let body: Readable | undefined;
        try {
          // An empty range still asks for one byte, so a missing blob is still an ObjectNotFoundError.
          body = (await this.client.getBlockBlobClient(full).download(start, Math.max(end - start, 1))).readableStreamBody as Readable | undefined;
        } catch (err) {
          // 416: the range starts at or past the blob's end (an empty blob included).
          if ((err as RestErrorShape | null)?.statusCode === 416) return Buffer.alloc(0);
          throw this.readError(err, full);
        }
        if (!body || end === start) {
          body?.destroy();
          return Buffer.alloc(0);
        }
        const chunks: Buffer[] = [];
        try {
          for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
        } catch (err) {
          throw new Error(`Failed to read ${this.ref(full)}: ${(err as Error).message}`, { cause: err });
        }
        return Buffer.concat(chunks).subarray(0, end - start);
      },
      this.retryForMs,
      isTransientAzureError,
    );
  }

  async put(key: string, body: Buffer | string): Promise<void> {
    const full = this.fullKey(key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    try {
      // Put Blob replaces the blob in one step: readers see the old or the new content.
      await retryTransient(
        () => this.client.getBlockBlobClient(full).upload(bytes, bytes.length, { blobHTTPHeaders: { blobContentType: contentTypeOf(key) } }),
        this.retryForMs,
        isTransientAzureError,
      );
    } catch (err) {
      throw this.writeError(err, full);
    }
  }

  /**
   * Put Blob with `If-None-Match: *`: Azure (and Azurite) refuse it with 409 BlobAlreadyExists
   * when the blob exists, atomically, so of two writers exactly one wins. A write whose answer is
   * lost and then retried sees its own blob and resolves false, as on S3.
   */
  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    const full = this.fullKey(key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    try {
      await retryTransient(
        () =>
          this.client.getBlockBlobClient(full).upload(bytes, bytes.length, {
            blobHTTPHeaders: { blobContentType: contentTypeOf(key) },
            conditions: { ifNoneMatch: '*' },
          }),
        this.retryForMs,
        isTransientAzureError,
      );
      return true;
    } catch (err) {
      const status = (err as RestErrorShape | null)?.statusCode;
      if ((status === 409 && errorCodeOf(err) === 'BlobAlreadyExists') || status === 412) return false;
      throw this.writeError(err, full);
    }
  }

  async putStream(key: string, chunks: AsyncIterable<Buffer | string>): Promise<void> {
    const full = this.fullKey(key);
    try {
      // Blocks of 8 MiB, two in flight, then one Put Block List: memory stays bounded and the
      // blob appears whole when the list is committed.
      await this.client
        .getBlockBlobClient(full)
        .uploadStream(Readable.from(chunks), 8 * 1024 * 1024, 2, { blobHTTPHeaders: { blobContentType: contentTypeOf(key) } });
    } catch (err) {
      throw this.writeError(err, full);
    }
  }

  async *list(prefix = '', opts: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const full = this.prefix + prefix;
    const { after } = opts;
    // Every key listed starts with `prefix`: an `after` beyond all of them leaves nothing to list.
    if (after !== undefined && !after.startsWith(prefix) && compareKeys(prefix, after) < 0) return;
    let token: string | undefined;
    do {
      const page = await retryTransient(() => this.listPage(full, token), this.retryForMs, isTransientAzureError);
      for (const blob of page?.segment.blobItems ?? []) {
        const key = blob.name.slice(this.prefix.length);
        // List Blobs has no StartAfter: earlier keys are skipped here, by byte order as S3 compares them.
        if (after === undefined || compareKeys(key, after) > 0) yield { key, size: blob.properties.contentLength ?? 0 };
      }
      token = page?.continuationToken || undefined;
    } while (token);
  }

  /** One page of List Blobs from `token`; a missing container is ObjectNotFoundError. */
  private async listPage(full: string, token: string | undefined): Promise<ContainerListBlobFlatSegmentResponse | undefined> {
    try {
      const pages = this.client.listBlobsFlat({ prefix: full || undefined }).byPage({ continuationToken: token, maxPageSize: this.pageSize });
      const next = await pages.next();
      return next.done ? undefined : next.value;
    } catch (err) {
      if (errorCodeOf(err) === 'ContainerNotFound') {
        throw new ObjectNotFoundError(this.ref(full), `container "${this.container}" does not exist`, { cause: err });
      }
      throw new Error(`Failed to list ${this.ref(full)}: ${(err as Error).message}`, { cause: err });
    }
  }

  async delete(key: string): Promise<void> {
    const full = this.fullKey(key);
    try {
      // A missing blob is fine; a missing container is a real error, as on S3.
      await retryTransient(() => this.client.getBlockBlobClient(full).deleteIfExists(), this.retryForMs, isTransientAzureError);
    } catch (err) {
      const detail = errorCodeOf(err) === 'ContainerNotFound' ? `container "${this.container}" does not exist` : (err as Error).message;
      throw new Error(`Failed to delete ${this.ref(full)}: ${detail}`, { cause: err });
    }
  }

  describe(): string {
    return formatAzUrl(this.container, this.prefix);
  }
}
