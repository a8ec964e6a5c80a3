/**
 * A private redis-server per test file: the production launcher (cli/private-redis.ts), so the
 * tests exercise the same code `cascade run` uses.
 */
import { startPrivateRedis } from '../../cli/private-redis.js';

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts redis-server on a free loopback port with persistence off; resolves once it answers. */
export async function startRedis(): Promise<TestRedis> {
  const redis = await startPrivateRedis();
  return { url: redis.url, port: redis.port, stop: redis.stop };
}
