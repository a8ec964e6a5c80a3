/**
 * Vitest `setupFiles` module (vitest.config.ts): runs in every test process before its test file.
 *
 * Why: the config loaders (config/load-config.ts, config/worker-config.ts) let the environment
 * win over a config file, as production wants: REDIS_URL over `redisUrl`, CASCADE_S3_ENDPOINT /
 * AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL over the S3 endpoint, AWS_REGION over its region. Run
 * from a shell or CI job that exports them for a real deployment, the tests' runs, and the
 * `cascade` processes they spawn (children inherit process.env), would queue jobs in that Redis
 * and write result parts into that bucket. So they are removed here, together with ambient AWS
 * credentials and profiles (a test that forgot its s3rver endpoint then fails instead of reaching
 * real S3 as someone): every test talks to the redis-server and s3rver it started itself, and a
 * test that wants one of these variables sets it explicitly (`env:` of loadConfig, a child's env).
 * test/unit/isolate-env.test.ts and test/integration/isolate-env.test.ts check that this holds.
 *
 * The user's caches (config/cache-dir.ts: kept conformance probes, probability rows) are
 * replaced by a fresh folder per test process, so a test neither reads what another version
 * left there nor leaves anything in the home folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Variables that would point a test at a real deployment's Redis or S3, or sign requests to it. */
export const DEPLOYMENT_ENV = [
  'REDIS_URL',
  'CASCADE_S3_ENDPOINT',
  'AWS_ENDPOINT_URL_S3',
  'AWS_ENDPOINT_URL',
  'AWS_REGION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
] as const;

/** Removes DEPLOYMENT_ENV from `env` (in place) and returns the names that were set. */
export function removeDeploymentEnv(env: NodeJS.ProcessEnv): string[] {
  const removed = DEPLOYMENT_ENV.filter((name) => env[name] !== undefined);
  for (const name of removed) delete env[name];
  return removed;
}

removeDeploymentEnv(process.env);

const testCache = mkdtempSync(join(tmpdir(), 'cascade-test-cache-'));
process.env.CASCADE_CACHE = testCache;
process.on('exit', () => rmSync(testCache, { recursive: true, force: true }));
