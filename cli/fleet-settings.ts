/**
 * The two settings that commands which only talk to Redis need (status, schedule list/remove,
 * dashboard): the Redis URL and the key prefix. Read without the models, which those
 * commands do not use, so they work with any config file or none.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, formatIssues } from '../config/load-config.js';
import { CascadeConfig } from '../config/schema.js';

const FleetSettings = z.object({ redisUrl: CascadeConfig.shape.redisUrl, prefix: CascadeConfig.shape.prefix });

/** Redis URL (REDIS_URL wins over the file) and prefix (`prefix` wins over the file); throws ConfigError when no URL is set. */
export async function fleetSettings(o: { config?: string; prefix?: string }, env: NodeJS.ProcessEnv = process.env): Promise<{ redisUrl: string; prefix: string }> {
  let fromFile: unknown = {};
  if (o.config) {
    const text = await readFile(resolve(o.config), 'utf8').catch((err: Error) => {
      throw new ConfigError(`cannot read ${o.config}: ${err.message}`);
    });
    try {
      fromFile = parseYaml(text) ?? {};
    } catch (err) {
      throw new ConfigError(`${o.config} is not valid YAML or JSON: ${(err as Error).message}`);
    }
  }
  const merged = { ...(fromFile as object), ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}), ...(o.prefix ? { prefix: o.prefix } : {}) };
  const parsed = FleetSettings.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration${o.config ? ` (${o.config})` : ''}:\n${formatIssues(parsed.error)}`);
  if (!parsed.data.redisUrl) throw new ConfigError(`no Redis to talk to: set REDIS_URL (e.g. redis://redis:6379) or 'redisUrl:' in the config file`);
  return { redisUrl: parsed.data.redisUrl, prefix: parsed.data.prefix };
}
