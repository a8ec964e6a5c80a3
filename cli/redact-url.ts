/**
 * Connection URLs may carry a password (redis://:secret@host, ?password=secret, or a
 * redis-cluster:// seed list, which URL cannot parse); log lines must never show it.
 */
import { hideRedisPassword, isClusterUrl } from '../queue/redis-connection.js';

/** `url` with its password replaced by `***`; an unparsable URL is hidden entirely, since it may still hold one. */
export function redactUrl(url: string): string {
  if (isClusterUrl(url)) return hideRedisPassword(url);
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return hideRedisPassword(u.toString().replace(/\/$/, ''));
  } catch {
    return '(unparsable url, hidden)';
  }
}
