/**
 * s3rver in a child process, so that the pipeline benchmarks charge the bench process only for
 * the client side of S3, as with a remote object store. The child prints its endpoint on
 * stdout and serves until killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { makeS3Client } from '../pipeline/storage/s3-store.js';

export interface S3Process {
  endpoint: string;
  client: S3Client;
  stop(): Promise<void>;
}

/** Start s3rver with `buckets` in a child process, serving `directory` when given (objects written there beforehand); resolves once it listens. */
export async function startS3Process(buckets: string[], opts: { directory?: string } = {}): Promise<S3Process> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'serve', ...buckets], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...(opts.directory ? { CASCADE_S3RVER_DIR: opts.directory } : {}) },
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`s3rver child exited with ${code} before listening`)));
    child.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
  });
  const client = makeS3Client({ endpoint, region: 'us-east-1', forcePathStyle: true }, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  return {
    endpoint,
    client,
    stop: async () => {
      client.destroy();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

if (process.argv[2] === 'serve' && process.argv[1] === fileURLToPath(import.meta.url)) {
  const { startS3 } = await import('../test/helpers/s3.js');
  const s3 = await startS3({ buckets: process.argv.slice(3), directory: process.env.CASCADE_S3RVER_DIR || undefined });
  process.stdout.write(`${s3.endpoint}\n`);
  process.once('SIGTERM', () => void s3.stop().finally(() => process.exit(0)));
}
