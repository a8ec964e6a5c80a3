/**
 * Redis connections for BullMQ. Workers block on Redis, so each consumer gets its own
 * connection with `maxRetriesPerRequest: null`, as BullMQ requires.
 */
import { Redis, type RedisOptions } from 'ioredis';

/** Open a BullMQ-ready connection to `url` (redis:// or rediss://, password and db honoured). */
export function connectRedis(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}
