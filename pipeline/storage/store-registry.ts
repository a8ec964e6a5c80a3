/**
 * The table of remote object stores, one row per URL scheme. Adding a store is one file that
 * exports its StoreScheme row (see s3-store.ts) and one line here; refs, locations, listing,
 * image and model reads, and outputs then accept its URLs. Local paths and file:// URLs are not
 * rows: they are read through LocalStore and local-roots.ts.
 */
import { azureScheme } from './azure-store.js';
import { s3Scheme } from './s3-store.js';
import type { StoreScheme } from './store-scheme.js';

/** Every remote store, by scheme. */
export const STORE_SCHEMES: readonly StoreScheme[] = [s3Scheme, azureScheme];

/** The row for a lower-case `scheme`, or undefined when no store reads it. */
export function storeScheme(scheme: string, schemes: readonly StoreScheme[] = STORE_SCHEMES): StoreScheme | undefined {
  return schemes.find((s) => s.scheme === scheme);
}
