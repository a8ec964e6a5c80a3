/**
 * The Redis URL a command was given, checked before any connection: a malformed one is a
 * configuration error (exit 2) naming where it came from (REDIS_URL or the config file's
 * `redisUrl`), never the URL itself, which may hold a password.
 */
import { ConfigError } from '../config/load-config.js';
import { redisUrlProblem } from '../queue/redis-connection.js';

/** `url` when it parses as a Redis URL; else a ConfigError naming REDIS_URL or the config file's `redisUrl`. */
export function checkedRedisUrl(url: string, env: NodeJS.ProcessEnv = process.env, configFile?: string): string {
  const problem = redisUrlProblem(url);
  if (problem === null) return url;
  // REDIS_URL wins over the file wherever both are read, so equal means it came from there.
  const where = env.REDIS_URL === url ? 'REDIS_URL' : `redisUrl${configFile ? ` in ${configFile}` : ' in the config file'}`;
  throw new ConfigError(`${where} is not a valid Redis URL (${problem})`);
}
