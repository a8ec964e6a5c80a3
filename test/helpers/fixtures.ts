/**
 * Per-file fixtures: each call registers the file's beforeAll/afterAll and returns a handle that
 * reads through to the value once beforeAll has made it, so a test file says what it needs in
 * one line (`const redis = withRedis()`) instead of repeating the same hooks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startRedis, type TestRedis } from './redis.js';
import { S3RVER_ENV, startS3, type TestS3 } from './s3.js';
import { writeTestModels, type TestModels } from './test-models.js';

/**
 * A value made in beforeAll and torn down in afterAll (after hooks run in reverse order, so a
 * fixture made from another is torn down first); reading the handle earlier throws.
 */
export function fixture<T extends object>(what: string, setup: () => Promise<T>, teardown?: (value: T) => Promise<void>): T {
  let value: T | undefined;
  beforeAll(async () => {
    value = await setup();
  });
  afterAll(async () => {
    if (value && teardown) await teardown(value);
  });
  return new Proxy({} as T, {
    get(_, key) {
      if (!value) throw new Error(`${what} is used before its beforeAll ran`);
      const v = Reflect.get(value, key, value);
      return typeof v === 'function' ? v.bind(value) : v;
    },
  });
}

/** A temporary folder for the file (`path`), removed after it. */
export function withTempDir(name: string): { readonly path: string } {
  return fixture(
    'temp dir',
    async () => ({ path: await mkdtemp(join(tmpdir(), `cascade-${name}-`)) }),
    ({ path }) => rm(path, { recursive: true, force: true }),
  );
}

/** A private redis-server for the file (test/helpers/redis.ts), stopped after it. */
export function withRedis(): TestRedis {
  return fixture('redis-server', startRedis, (redis) => redis.stop());
}

/** An s3rver for the file (test/helpers/s3.ts) with `buckets` created, stopped after it. */
export function withS3(opts: { buckets?: string[] } = {}): TestS3 {
  return fixture(
    's3rver',
    () => startS3(opts),
    (s3) => s3.stop(),
  );
}

/** The generated test models (test/helpers/test-models.ts), written to `models/` of `dir`. */
export function withModels(dir: { readonly path: string }): TestModels {
  return fixture('test models', () => writeTestModels(join(dir.path, 'models')));
}

/**
 * s3rver's credentials in this process's environment for the file (commands run in-process read
 * them through the AWS SDK's default chain); removed after it, as isolate-env.ts left it.
 */
export function withS3rverCredentials(): void {
  beforeAll(() => {
    Object.assign(process.env, S3RVER_ENV);
  });
  afterAll(() => {
    for (const name of Object.keys(S3RVER_ENV)) delete process.env[name];
  });
}
