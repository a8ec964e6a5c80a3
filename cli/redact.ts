/**
 * Secrets must never reach a log line or a printed error: Redis AUTH/HELLO arguments (ioredis
 * puts them on its error objects), passwords in URLs in any form (redis://:secret@host,
 * ?password=secret, a redis-cluster:// seed list, which URL cannot parse), AWS keys, Azure
 * account keys, SAS signatures and connection strings.
 */
import { hideRedisPassword, isClusterUrl } from '../queue/redis-connection.js';

const MASK = '***';
// Object keys whose values are secrets wherever they appear.
const SECRET_KEY = /pass(word)?|secret|token|authorization|credential|session_?key|^auth$|account_?key|storage_?key|connection_?string|signature/i;

/** `text` with URL passwords, `password=`-style parameters, AUTH arguments and AWS keys masked. */
export function redactSecrets(text: string): string {
  return (
    text
      // Azure connection strings: AccountKey=…; SharedAccessSignature=…; (a value runs to the next ';')
      .replace(/\b(AccountKey|SharedAccessSignature)=[^;\n"'`]*/gi, `$1=${MASK}`)
      // Azure SAS signatures in URLs and tokens (…&sig=…); the other SAS fields are not secret
      .replace(/\b(sig=)[^&;\s"'`]+/gi, `$1${MASK}`)
      // Azure settings and variables by name: accountKey: "…", AZURE_STORAGE_KEY=…, sasToken='…'
      .replace(
        /\b(accountKey|sasToken|connectionString|AZURE_STORAGE_(?:KEY|SAS_TOKEN|CONNECTION_STRING))(["']?\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s&"',;}]+)/gi,
        `$1$2${MASK}`,
      )
      // scheme://user:password@host (s3 endpoints, …)
      .replace(/([a-z][a-z0-9+.-]*:\/\/[^:@/\s'"]*):([^@/\s'"]+)@/gi, `$1:${MASK}@`)
      // ?password=… &pass=… token=…, and "password": "…" / password: '…'
      .replace(/\b((?:password|passwd|pass|pwd|secret|token|aws_secret_access_key|secretAccessKey|sessionToken)["']?\s*[=:]\s*["']?)[^\s&"',}]+/gi, `$1${MASK}`)
      // Redis URLs (after password=, whose value may hold an '@'): the whole userinfo, to the last '@' before a host on the line, whatever the
      // password holds (an unencoded '@', ':', '/', '#', '?', spaces).
      .replace(/\b(rediss?(?:-cluster)?:\/\/)[^\n]*@(?=[\w[])/gi, `$1${MASK}@`)
      // AUTH [user] password / HELLO 3 AUTH user password, as text or as a printed array
      .replace(/\b(AUTH)((?:["',\s[\]]+)(?:[^\s"',[\]]+["',\s[\]]+)?)([^\s"',[\]]+)/g, `$1$2${MASK}`)
      // AWS access key ids
      .replace(/\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, `$1${MASK}`)
  );
}

/** Redis command arguments with everything after AUTH masked (HELLO 3 AUTH user pw, AUTH pw, AUTH user pw). */
function redactArgs(args: unknown[], commandName?: string): unknown[] {
  if (commandName && /^auth$/i.test(commandName)) return args.map(() => MASK);
  const at = args.findIndex((a) => typeof a === 'string' && a.toUpperCase() === 'AUTH');
  if (at < 0) return args.map((a) => redactValue(a));
  return args.map((a, i) => (i > at ? MASK : a));
}

/** A copy of `value` (any depth, errors included) with every secret masked; safe to log or print. */
export function redactValue(value: unknown, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (Array.isArray(value)) return redactArgs(value);
  if (Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  const src = value as Record<string, unknown>;
  // Errors keep name/message/stack, which are not enumerable.
  const keys = value instanceof Error ? ['name', 'message', 'stack', ...Object.keys(value)] : Object.keys(value);
  const commandName = typeof src.name === 'string' ? src.name : undefined;
  for (const key of keys) {
    const v = src[key];
    if (v === undefined) continue;
    if (SECRET_KEY.test(key) && (typeof v === 'string' || typeof v === 'number')) out[key] = MASK;
    else if (key === 'args' && Array.isArray(v)) out[key] = redactArgs(v, commandName);
    else out[key] = redactValue(v, seen);
  }
  return out;
}

/** `url` with its password replaced by `***`; an unparsable URL is hidden entirely, since it may still hold one. */
export function redactUrl(url: string): string {
  if (isClusterUrl(url)) return hideRedisPassword(url);
  try {
    const u = new URL(url);
    if (u.password) u.password = MASK;
    return hideRedisPassword(u.toString().replace(/\/$/, ''));
  } catch {
    return '(unparsable url, hidden)';
  }
}
