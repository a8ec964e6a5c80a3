/**
 * The settings that commands which only talk to Redis need (status, retry, schedule list/remove,
 * dashboard): the Redis URL, the key prefix and the queue shards per stage. Read without the models, which those
 * commands do not use, so they work with any config file or none.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, formatIssues, readStructured } from '../config/load-config.js';
import { CascadeConfig } from '../config/schema.js';
import { checkedRedisUrl } from './redis-url-setting.js';

const FleetSettings = z.object({ redisUrl: CascadeConfig.shape.redisUrl, prefix: CascadeConfig.shape.prefix, queues: CascadeConfig.shape.queues });

/** Redis URL (REDIS_URL wins over the file) and prefix (`prefix` wins over the file); throws ConfigError when no URL is set. */
export async function fleetSettings(
  o: { config?: string; prefix?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ redisUrl: string; prefix: string; shards: number }> {
  const fromFile = o.config ? ((await readStructured(resolve(o.config), o.config)) ?? {}) : {};
  const merged = { ...(fromFile as object), ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}), ...(o.prefix ? { prefix: o.prefix } : {}) };
  const parsed = FleetSettings.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration${o.config ? ` (${o.config})` : ''}:\n${formatIssues(parsed.error)}`);
  if (!parsed.data.redisUrl) throw new ConfigError(`no Redis to talk to: set REDIS_URL (e.g. redis://redis:6379) or 'redisUrl:' in the config file`);
  return { redisUrl: checkedRedisUrl(parsed.data.redisUrl, env, o.config), prefix: parsed.data.prefix, shards: parsed.data.queues.shards };
}
