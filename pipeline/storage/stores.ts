/**
 * The process's (or command's) object stores: one Stores is made from the settings when a
 * command or worker process starts, and every read or write of a location or ref goes through
 * it. Each registry row is connected on first use and once only, so a local-only run never
 * builds a cloud client; close() releases the clients built.
 */
import { LocalStore } from './local-store.js';
import { formatRemoteUrl, type Location, parseLocation, type RemoteUrl, storeLabel } from './location.js';
import { ObjectNotFoundError, type ObjectStore } from './object-store.js';
import { DEFAULT_TRANSIENT_RETRY_MS, retryTransient } from './retry-transient.js';
import { STORE_SCHEMES, storeScheme } from './store-registry.js';
import type { OpenOptions, StoreConnection, StoreScheme, StoreSettings } from './store-scheme.js';

export type { StoreSettings } from './store-scheme.js';

export interface StoresOptions {
  /**
   * Clients the caller built and owns, by scheme (`{ s3: client }`), used instead of building
   * one from the settings: tests and benchmarks that need explicit credentials or retry policies.
   */
  clients?: Readonly<Record<string, unknown>>;
  /** The registry rows (default STORE_SCHEMES). */
  schemes?: readonly StoreScheme[];
}

/** The object stores one process reads and writes, each client built lazily and once. */
export class Stores {
  private readonly connections = new Map<string, StoreConnection>();
  private readonly schemes: readonly StoreScheme[];

  /** Nothing is connected here: each scheme's client is built when a ref first needs it. */
  constructor(
    private readonly settings: StoreSettings = {},
    private readonly opts: StoresOptions = {},
  ) {
    this.schemes = opts.schemes ?? STORE_SCHEMES;
  }

  /** Opens the store for a location (or location string): a local directory or a remote prefix. */
  open(location: Location | string, opts: OpenOptions = {}): ObjectStore {
    const loc = typeof location === 'string' ? parseLocation(location) : location;
    return loc.kind === 'remote' ? this.connection(loc.scheme).open(loc.bucket, loc.prefix, opts) : new LocalStore(loc.path);
  }

  /**
   * Reads one remote object whole, refusing it above `maxBytes` (ObjectTooLargeError) and
   * retrying transient failures for `retryForMs` (default 60 s) on top of the client's own retries.
   */
  async read(url: RemoteUrl, opts: { maxBytes?: number; retryForMs?: number } = {}): Promise<Buffer> {
    const conn = this.connection(url.scheme);
    const store = conn.open(url.bucket, '');
    return retryTransient(
      () => store.get(url.key, { maxBytes: opts.maxBytes }),
      opts.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS,
      (err) => conn.isTransient(err),
    );
  }

  /** Reads bytes `start` to `end` of one remote object (fewer where it ends sooner), retrying transient failures as read() does. */
  async readRange(url: RemoteUrl, start: number, end: number, opts: { retryForMs?: number } = {}): Promise<Buffer> {
    const conn = this.connection(url.scheme);
    const store = conn.open(url.bucket, '');
    return retryTransient(
      () => store.getRange(url.key, start, end),
      opts.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS,
      (err) => conn.isTransient(err),
    );
  }

  /** The size in bytes of one remote object, from its listing entry; ObjectNotFoundError when there is none. */
  async size(url: RemoteUrl, opts: { retryForMs?: number } = {}): Promise<number> {
    const conn = this.connection(url.scheme);
    const store = conn.open(url.bucket, '');
    const found = await retryTransient(
      async () => {
        // The key is its own listing prefix; keys that merely start with it come after it.
        for await (const o of store.list(url.key)) if (o.key === url.key) return o.size;
        return null;
      },
      opts.retryForMs ?? DEFAULT_TRANSIENT_RETRY_MS,
      (err) => conn.isTransient(err),
    );
    if (found === null) throw new ObjectNotFoundError(formatRemoteUrl(url));
    return found;
  }

  /** Releases every client this Stores built (borrowed ones stay open); later use connects again. */
  close(): void {
    for (const conn of this.connections.values()) conn.close();
    this.connections.clear();
  }

  private connection(scheme: string): StoreConnection {
    let conn = this.connections.get(scheme);
    if (!conn) {
      const row = storeScheme(scheme, this.schemes);
      if (!row) throw new Error(`No ${storeLabel(scheme)} store is configured for ${scheme}:// URLs`);
      conn = row.connect(this.settings, this.opts.clients?.[scheme]);
      this.connections.set(scheme, conn);
    }
    return conn;
  }
}

/** Runs `fn` with a Stores made from `settings`, closing its clients afterwards, whatever `fn` does. */
export async function withStores<T>(settings: StoreSettings, fn: (stores: Stores) => Promise<T>): Promise<T> {
  const stores = new Stores(settings);
  try {
    return await fn(stores);
  } finally {
    stores.close();
  }
}
