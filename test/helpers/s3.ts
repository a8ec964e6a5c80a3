/**
 * An in-process S3 emulator (s3rver) on a free loopback port with its own temp directory, and a
 * client configured the way production builds one (makeS3Client) plus dummy credentials.
 */
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { type S3ClientOptions, makeS3Client } from '../../pipeline/storage/s3-store.js';
import { Stores } from '../../pipeline/storage/stores.js';

export interface TestS3 {
  endpoint: string;
  port: number;
  client: S3Client;
  /** Stores whose S3 row uses `client` (borrowed: stop() destroys it). */
  stores: Stores;
  /** Another client on the same endpoint, e.g. with a different retry policy. */
  makeClient(opts?: S3ClientOptions): S3Client;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

// s3rver's DUMMY credentials.
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** The same credentials as the AWS SDK's default chain reads them from the environment (a child process's, or this one's). */
export const S3RVER_ENV = { AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey } as const;

/**
 * Starts s3rver on 127.0.0.1 (any free port, or `port`) in a fresh temp dir, or in `directory`
 * (objects written there beforehand are served; the caller removes it); `buckets` exist before it listens.
 */
export async function startS3(opts: { port?: number; buckets?: string[]; directory?: string } = {}): Promise<TestS3> {
  allowSingleDes();
  const directory = opts.directory ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-s3rver-')));
  const server = new S3rver({
    address: '127.0.0.1',
    port: opts.port ?? 0,
    silent: true,
    directory,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  const makeClient = (o: S3ClientOptions = {}) => {
    const c = makeS3Client({ endpoint, region: 'us-east-1', forcePathStyle: true }, { credentials: CREDENTIALS, ...o });
    clients.push(c);
    return c;
  };
  const client = makeClient();
  return {
    endpoint,
    port,
    client,
    stores: new Stores({}, { clients: { s3: client } }),
    makeClient,
    createBucket: async (name) => {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    stop: async () => {
      for (const c of clients) c.destroy();
      // Keep-alive sockets would otherwise hold close() open until they time out.
      server.httpServer?.closeAllConnections();
      await server.close();
      if (!opts.directory) await fs.rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * s3rver encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 (Node >= 17)
 * only has in its legacy provider, so every paginated listing fails with a 500. Triple DES with
 * three equal keys is single DES, and the default provider has it: route 'des' there. Only calls
 * that would throw anyway are affected, so patching the test process is harmless.
 */
function allowSingleDes(): void {
  const c = crypto as typeof crypto & { __cascadeDesPatched?: boolean };
  if (c.__cascadeDesPatched) return;
  const { createCipheriv, createDecipheriv } = crypto;
  const ede3 = (key: crypto.CipherKey) => {
    const k = Buffer.from(key as Buffer);
    return Buffer.concat([k, k, k]);
  };
  c.createCipheriv = ((alg: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, options?: unknown) =>
    alg.toLowerCase() === 'des'
      ? createCipheriv('des-ede3-cbc', ede3(key), iv)
      : createCipheriv(alg, key, iv, options as never)) as typeof crypto.createCipheriv;
  c.createDecipheriv = ((alg: string, key: crypto.CipherKey, iv: crypto.BinaryLike | null, options?: unknown) =>
    alg.toLowerCase() === 'des'
      ? createDecipheriv('des-ede3-cbc', ede3(key), iv)
      : createDecipheriv(alg, key, iv, options as never)) as typeof crypto.createDecipheriv;
  c.__cascadeDesPatched = true;
}
