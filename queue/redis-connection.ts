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
import { CascadeError, CascadeFailure } from '../config/errors.js';

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

/** Redis did not answer within the start-up timeout (exit 1). */
export class RedisUnreachableError extends CascadeFailure {
  override name = 'RedisUnreachableError';
}

/** Redis rejected the credentials (NOAUTH, WRONGPASS): a configuration error (exit 2). */
export class RedisAuthError extends CascadeError {
  override name = 'RedisAuthError';
}

/** Default of CASCADE_REDIS_TIMEOUT_MS: how long a command waits for Redis at its start. */
export const DEFAULT_REDIS_TIMEOUT_MS = 10_000;

/** The start-up wait for Redis: CASCADE_REDIS_TIMEOUT_MS (milliseconds), else 10 s. */
export function redisTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.CASCADE_REDIS_TIMEOUT_MS);
  return env.CASCADE_REDIS_TIMEOUT_MS && Number.isFinite(v) && v > 0 ? v : DEFAULT_REDIS_TIMEOUT_MS;
}

/**
 * `url` with its whole userinfo hidden, up to the LAST `@` (`redis://***@host`), and any
 * `password=` parameter, for messages; cluster URLs too. A password may hold an unencoded `@`,
 * `:`, `/`, `#`, `?` or spaces, and any shorter cut would print the rest of it.
 */
export function hideRedisPassword(url: string): string {
  // The parameter first: an `@` in its value must not be taken for the end of the userinfo.
  const noParam = url.replace(/([?&]password=)[^&]*/gi, '$1***');
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([\s\S]*)$/i.exec(noParam);
  if (!m) return noParam;
  const rest = m[2]!;
  const at = rest.lastIndexOf('@');
  if (at < 0) return noParam;
  // The whole userinfo: a user name can be a credential too, and where it ends is ambiguous once the password holds ':' or '@'.
  return `${m[1]}***${rest.slice(at)}`;
}

const REDIS_URL_FORM =
  'expected redis://host[:port][/db] with any credentials as user:password before the host and an @, rediss://… or redis-cluster://host:port[,host:port…]';

/**
 * Why `url` cannot be a Redis URL, in words that hold no part of it (it may carry a password);
 * null when it parses. A unix socket path (`/run/redis.sock`) is accepted as ioredis takes it.
 */
export function redisUrlProblem(url: string): string | null {
  if (url.startsWith('/')) return null;
  if (isClusterUrl(url)) {
    try {
      parseClusterUrl(url);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme !== 'redis' && scheme !== 'rediss') return `${scheme ? `scheme "${scheme}://"` : 'no scheme'}: ${REDIS_URL_FORM}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `it does not parse: ${REDIS_URL_FORM}; percent-encode @ : / # ? % and spaces in the user name and password`;
  }
  if (!parsed.hostname) return `no host: ${REDIS_URL_FORM}`;
  if (parsed.pathname && parsed.pathname !== '/' && !/^\/\d+$/.test(parsed.pathname))
    return `the path must be a database number (/0, /1, …); percent-encode / # ? in a password`;
  return null;
}

/** The last node's error behind a cluster client's "Failed to refresh slots cache" (ClusterAllFailedError), if any. */
function lastNodeError(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { lastNodeError?: unknown }).lastNodeError : undefined;
}

/** True for Redis' answers to missing or wrong credentials, also behind a cluster client's failure. */
export function isRedisAuthError(err: unknown): boolean {
  const node = lastNodeError(err);
  if (node && isRedisAuthError(node)) return true;
  const m = err instanceof Error ? err.message : String(err);
  return /\b(NOAUTH|WRONGPASS)\b|invalid password|invalid username-password/i.test(m);
}

/**
 * Wait until `client` is ready, for at most `timeoutMs`: a one-shot command calls it at its
 * start so an unreachable Redis (RedisUnreachableError, exit 1) or rejected credentials
 * (RedisAuthError, exit 2) end it with one line naming `url` without its password, instead of
 * a hang. The caller disconnects the client when it throws. Running workers do not use this:
 * they keep reconnecting.
 */
export async function waitForRedis(client: Redis, url: string, timeoutMs = redisTimeoutMs()): Promise<void> {
  if (client.status === 'ready') return;
  const where = hideRedisPassword(url);
  await new Promise<void>((resolve, reject) => {
    let last: Error | undefined;
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
      // Errors still in flight as the caller disconnects must not print as unhandled.
      if (err) client.on('error', () => {});
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onError = (err: Error) => {
      last = err;
      if (isRedisAuthError(err)) done(new RedisAuthError(`Redis at ${where} rejected the credentials: ${oneLine(err)}`));
    };
    const timer = setTimeout(
      () => done(new RedisUnreachableError(`Redis at ${where} is unreachable after ${timeoutMs / 1000} s${last ? `: ${oneLine(last)}` : ''}`)),
      timeoutMs,
    );
    client.on('ready', onReady);
    client.on('error', onError);
  });
}

/** Network-level errors of a Redis connection (the server is away), by errno code. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** True for errors that say the connection to Redis is down or refused (not a command's own failure). */
export function isRedisConnectionError(err: unknown): boolean {
  if (isRedisAuthError(err)) return true;
  if (!(err instanceof Error)) return false;
  if (CONNECTION_CODES.has((err as NodeJS.ErrnoException).code ?? '')) return true;
  return /Connection is closed|Stream isn't writeable|connect ETIMEDOUT|Failed to refresh slots cache|None of startup nodes is available|ClusterAllFailedError|^LOADING\b/.test(
    err.message,
  );
}

/** What watchRedis logs with (the shape of cli's LogFn and the workers' WorkerLog). */
export type ConnectionLog = (msg: string, fields?: { level?: 'debug' | 'info' | 'warn' | 'error'; [field: string]: unknown }) => void;

/** A long-running process's view of its Redis connection: see watchRedis. */
export interface RedisWatch {
  /** True when `err` is a connection error, which the watch then reports (once per outage) so the caller need not. */
  absorb(err: unknown): boolean;
  stop(): void;
}

/**
 * One warn line when the connection to Redis drops, one more if it then rejects the credentials (a
 * password rotated on the server), one info line when it is back; the attempts in between are
 * debug lines.
 * A worker keeps reconnecting through an outage (ioredis retries), and every attempt of every
 * BullMQ connection used to log its own error. No line holds the URL's password or the AUTH
 * arguments: the URL is redacted and errors are reduced to their message's first line.
 */
export function watchRedis(client: Redis, url: string, log: ConnectionLog, now: () => number = Date.now): RedisWatch {
  const where = hideRedisPassword(url);
  let downSince: number | null = null;
  // A dropped connection often fails first on the socket (EPIPE, ECONNRESET), then on the
  // credentials when it logs in again: the rejection gets its own line, once per outage.
  let authReported = false;
  const absorb = (err: unknown): boolean => {
    if (!isRedisConnectionError(err)) return false;
    const why = oneLine(err as Error);
    const auth = isRedisAuthError(err);
    if (downSince !== null && (authReported || !auth)) {
      log(`Redis at ${where} still unavailable: ${why}`, { level: 'debug' });
      return true;
    }
    downSince ??= now();
    if (auth) {
      authReported = true;
      log(`Redis at ${where} rejected the credentials (${why}); was the password changed? Reconnecting until they are accepted`, {
        level: 'warn',
        errorKind: 'auth',
      });
    } else log(`lost the connection to Redis at ${where} (${why}); reconnecting`, { level: 'warn', errorKind: 'connection' });
    return true;
  };
  const onError = (err: Error) => void absorb(err);
  const onReady = () => {
    if (downSince === null) return;
    log(`Redis at ${where} is back after ${((now() - downSince) / 1000).toFixed(1)} s`, { level: 'info' });
    downSince = null;
    authReported = false;
  };
  client.on('error', onError);
  client.on('ready', onReady);
  return {
    absorb,
    stop: () => {
      client.off('error', onError);
      client.off('ready', onReady);
    },
  };
}

/**
 * An error's message on one line (never its AUTH arguments), with the last node's error when a
 * cluster client failed: "Failed to refresh slots cache." alone does not say why.
 */
function oneLine(err: Error): string {
  const first = (e: unknown) => ((e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '').slice(0, 200);
  const node = lastNodeError(err);
  return node ? `${first(err)} (last node: ${first(node)})` : first(err);
}

/** connectRedis, then waitForRedis: a ready client, or one line (and no client left open) within `timeoutMs`. */
export async function connectRedisChecked(url: string, extra: RedisOptions = {}, timeoutMs = redisTimeoutMs()): Promise<Redis> {
  // A refused socket never emits 'close' again: ioredis would hold the process its full
  // disconnectTimeout (2 s) after the failure.
  const client = connectRedis(url, { disconnectTimeout: 200, ...extra });
  try {
    await waitForRedis(client, url, timeoutMs);
  } catch (err) {
    client.disconnect();
    throw err;
  }
  return client;
}
