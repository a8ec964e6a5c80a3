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

/**
 * `name` plus a random suffix: a BullMQ key prefix no other test file (or run of this one) uses,
 * so tests that share a redis-server cannot see or overwrite each other's queues and runs.
 */
export function uniquePrefix(name: string): string {
  return `${name}-${Math.random().toString(36).slice(2, 8)}`;
}
