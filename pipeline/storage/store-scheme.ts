/**
 * The shape of one row of the store registry (store-registry.ts): a remote object store that
 * refs name as `<scheme>://<container>/<key>`. A row knows its URL rules and how to connect;
 * Stores (stores.ts) connects each row at most once, on first use.
 */
import type { z } from 'zod';
import type { AzureSettings, S3Settings } from '../../config/schema.js';
import type { ObjectStore } from './object-store.js';

/** The settings rows build their clients from (the config's `s3:` block, ...). */
export interface StoreSettings {
  readonly s3?: z.input<typeof S3Settings>;
  readonly azure?: z.input<typeof AzureSettings>;
}

/** Options of one opened store that only tests and benchmarks set. */
export interface OpenOptions {
  /** Listing page size (S3 MaxKeys); smaller pages are only useful to exercise pagination. */
  pageSize?: number;
}

/** A connected scheme: its client, built once, and what every store of the scheme shares. */
export interface StoreConnection {
  /** The store over `container` + `prefix` (prefix '' or ending with '/'). */
  open(container: string, prefix: string, opts?: OpenOptions): ObjectStore;
  /** True for failures worth retrying (network errors, timeouts, 5xx, throttling). */
  isTransient(err: unknown): boolean;
  /** Releases the client (sockets); a borrowed client is left to its owner. */
  close(): void;
}

/** One remote store in the registry. */
export interface StoreScheme {
  /** The URL scheme, lower case, without `://` (`s3`). */
  readonly scheme: string;
  /** The store's name in messages (`S3`). */
  readonly label: string;
  /** What the URL's first segment names, in messages (`bucket`). */
  readonly container: string;
  /** Why `name` cannot be a container name (completes "invalid bucket name ... "), or null when it can. */
  containerProblem(name: string): string | null;
  /**
   * What else in a key would make the request name another object (completes "the key has ..."),
   * or null; `.`/`..` segments are refused for every row.
   */
  keyProblem?(key: string): string | null;
  /**
   * Connects with `settings`, or with `borrowed` (a client the caller built, e.g. with test
   * credentials, and still owns). Called at most once per Stores, when a ref first needs it.
   */
  connect(settings: StoreSettings, borrowed?: unknown): StoreConnection;
}
