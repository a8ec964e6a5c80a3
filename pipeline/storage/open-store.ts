/**
 * Picks the ObjectStore for a location. Kept apart from object-store.ts so the interface module
 * does not import its own implementations.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { LocalStore } from './local-store.js';
import { type Location, parseLocation } from './location.js';
import type { ObjectStore } from './object-store.js';
import { S3Store } from './s3-store.js';

export { makeS3Client } from './s3-store.js';

/** Opens the store for a location (or location string); the S3 client is only built for s3:// locations. */
export function openStore(location: Location | string, s3Client: () => S3Client): ObjectStore {
  const loc = typeof location === 'string' ? parseLocation(location) : location;
  return loc.kind === 's3' ? new S3Store({ client: s3Client(), bucket: loc.bucket, prefix: loc.prefix }) : new LocalStore(loc.path);
}
