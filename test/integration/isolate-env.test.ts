/**
 * No test reaches a deployment named by the environment (test/helpers/isolate-env.ts): vitest
 * is started, as a developer's shell would start it, with REDIS_URL pointing at a decoy
 * redis-server and CASCADE_S3_ENDPOINT / AWS_REGION at a decoy S3 endpoint, and runs a
 * representative integration file (hostile-inputs: `cascade run` from config files naming their
 * own Redis and s3rver, which those variables would override). It must pass, and neither decoy
 * may have been contacted.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../../queue/redis-connection.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const REPRESENTATIVE = 'test/integration/hostile-inputs.test.ts';

let decoyRedis: TestRedis;
let watcher: Redis;
/** A decoy S3 endpoint: counts requests and answers every one with a 500. */
let decoyS3: Server;
let s3Requests = 0;

/** Connections the decoy redis-server has accepted so far (this file's own watcher included). */
async function connectionsReceived(): Promise<number> {
  return Number(/total_connections_received:(\d+)/.exec(await watcher.info('stats'))![1]);
}

beforeAll(async () => {
  decoyRedis = await startRedis();
  watcher = connectRedis(decoyRedis.url);
  decoyS3 = createServer((_req, res) => {
    s3Requests++;
    res.writeHead(500).end();
  });
  await new Promise<void>((done) => decoyS3.listen(0, '127.0.0.1', done));
});

afterAll(async () => {
  watcher?.disconnect();
  await decoyRedis?.stop();
  await new Promise((done) => decoyS3?.close(done));
});

describe('test environment isolation, end to end', () => {
  it('vitest with REDIS_URL and an S3 endpoint set to decoys passes, never contacting them', { timeout: 180_000 }, async () => {
    const before = await connectionsReceived();
    // This process's own vitest variables would make the child think it is one of this run's workers.
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('VITEST')));
    Object.assign(env, {
      REDIS_URL: decoyRedis.url,
      CASCADE_S3_ENDPOINT: `http://127.0.0.1:${(decoyS3.address() as AddressInfo).port}`,
      AWS_REGION: 'decoy-region-1',
      NO_COLOR: '1',
    });
    const vitest = resolve(REPO, 'node_modules/vitest/vitest.mjs');
    const child = await promisify(execFile)(process.execPath, [vitest, 'run', REPRESENTATIVE, '--reporter=dot'], {
      cwd: REPO,
      env,
      timeout: 170_000,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { code?: number; stdout?: string; stderr?: string }) => err);
    const output = `${child.stdout ?? ''}${child.stderr ?? ''}`;
    expect('code' in child ? child.code : 0, output).toBe(0);
    expect(output).toMatch(/Tests\s+\d+ passed/);
    expect(await connectionsReceived(), 'connections to the decoy Redis').toBe(before);
    expect(await watcher.dbsize(), 'keys in the decoy Redis').toBe(0);
    expect(s3Requests, 'requests to the decoy S3 endpoint').toBe(0);
  });
});
