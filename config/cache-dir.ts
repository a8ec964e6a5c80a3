/**
 * Where cascade keeps what it can recompute but would rather not: per-user caches that survive
 * runs (probability rows for calibration, conformance probes).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The root of cascade's caches: $CASCADE_CACHE, else $XDG_CACHE_HOME/cascade, else ~/.cache/cascade. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CASCADE_CACHE) return env.CASCADE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'cascade');
}
