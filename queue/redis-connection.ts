/**
 * Redis connections for BullMQ. Workers block on Redis, so each consumer gets its own
 * connection with `maxRetriesPerRequest: null`, as BullMQ requires.
 *
 * URLs: `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS), and for Redis Cluster
 * `redis-cluster://[user:pass@]host:port[,host:port…]` (`rediss-cluster://` for TLS) naming
 * one or more seed nodes. On a cluster every key of a queue or run must hash to one slot, so
 * the key prefix must carry a hash tag, e.g. `{cascade}`.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';

const CLUSTER_SCHEME = /^(rediss?)-cluster:\/\/(.*)$/i;

/** The seed nodes and credentials of a `redis-cluster://` URL. */
export interface ClusterUrl {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

/** True when `url` names a Redis Cluster (`redis-cluster://` or `rediss-cluster://`). */
export function isClusterUrl(url: string): boolean {
  return CLUSTER_SCHEME.test(url);
}

/** Parses `redis-cluster://[user:pass@]host:port,host:port`; throws naming the bad part. */
export function parseClusterUrl(url: string): ClusterUrl {
  const m = CLUSTER_SCHEME.exec(url);
  if (!m) throw new Error('not a redis-cluster:// URL');
  const tls = m[1]!.toLowerCase() === 'rediss';
  let rest = m[2]!.replace(/\/+$/, '');
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const auth = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon >= 0 ? auth.slice(0, colon) : auth) || undefined;
    password = colon >= 0 ? decodeURIComponent(auth.slice(colon + 1)) : undefined;
  }
  const nodes = rest.split(',').map((hostPort) => {
    const hp = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(hostPort.trim());
    const port = Number(hp?.[2]);
    // No credentials in the message: the URL may hold a password.
    if (!hp || port < 1 || port > 65535) throw new Error(`Redis Cluster URL: bad node "${hostPort}" (expected host:port)`);
    return { host: hp[1]!, port };
  });
  return { nodes, username, password, tls };
}

/** True when every key under `prefix` hashes to one cluster slot: it holds a non-empty `{tag}`. */
export function hasHashTag(prefix: string): boolean {
  return /\{[^{}]+\}/.test(prefix.slice(0, prefix.indexOf('}') + 1));
}

/** Throws a clear error when `target` (a URL or an open connection) is a cluster and `prefix` lacks the hash tag BullMQ needs there. */
export function assertClusterPrefix(target: string | Redis, prefix: string): void {
  const cluster = typeof target === 'string' ? isClusterUrl(target) : (target as { isCluster?: boolean }).isCluster === true;
  if (cluster && !hasHashTag(prefix)) {
    throw new Error(`prefix "${prefix}" has no hash tag: on Redis Cluster use one like "{${prefix}}" so each queue's and run's keys share a slot`);
  }
}

/**
 * Open a BullMQ-ready connection to `url` (see the module comment for the schemes).
 * A cluster client is returned typed as Redis: it has the same command interface this code
 * uses (commands, defineCommand, duplicate, disconnect) and BullMQ accepts either.
 */
export function connectRedis(url: string, extra: RedisOptions = {}): Redis {
  if (!isClusterUrl(url)) return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
  const c = parseClusterUrl(url);
  const redisOptions: RedisOptions = {
    maxRetriesPerRequest: null,
    ...(c.username ? { username: c.username } : {}),
    ...(c.password !== undefined ? { password: c.password } : {}),
    ...(c.tls ? { tls: {} } : {}),
    ...extra,
  };
  const cluster = new Cluster(c.nodes, { redisOptions, enableReadyCheck: true, maxRedirections: 32 });
  return cluster as unknown as Redis;
}
