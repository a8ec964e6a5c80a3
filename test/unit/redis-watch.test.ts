/**
 * How a long-running process reports its Redis connection (queue/redis-connection.ts
 * watchRedis) and how URLs are redacted (cli/redact.ts). The client here is an EventEmitter
 * standing in for ioredis, which emits the same 'error' and 'ready' events; the real client
 * against a real redis-server whose password is rotated is in test/integration/redis-auth.test.ts.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../cli/redact.js';
import { isRedisAuthError, isRedisConnectionError, watchRedis } from '../../queue/redis-connection.js';

/** An ioredis-style reply error: its `command` holds the AUTH arguments, password included. */
function wrongPass(): Error {
  return Object.assign(new Error('WRONGPASS invalid username-password pair or user is disabled.'), {
    name: 'ReplyError',
    command: { name: 'hello', args: ['3', 'AUTH', 'default', 'hunter2'] },
  });
}
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

describe('watchRedis', () => {
  it('one warn line per outage and one info line when it is back; attempts in between are debug', () => {
    const client = new EventEmitter();
    const lines: Array<[string, string]> = [];
    let t = 1000;
    watchRedis(
      client as unknown as Redis,
      'redis://:hunter2@db:6379',
      (msg, f) => lines.push([f?.level ?? 'info', msg]),
      () => t,
    );
    for (let i = 0; i < 50; i++) client.emit('error', wrongPass());
    t += 12_500;
    client.emit('ready');
    client.emit('ready');
    client.emit('error', refused());
    client.emit('error', refused());
    const shown = lines.filter(([level]) => level !== 'debug');
    expect(shown).toEqual([
      [
        'warn',
        'Redis at redis://***@db:6379 rejected the credentials (WRONGPASS invalid username-password pair or user is disabled.); was the password changed? Reconnecting until they are accepted',
      ],
      ['info', 'Redis at redis://***@db:6379 is back after 12.5 s'],
      ['warn', 'lost the connection to Redis at redis://***@db:6379 (connect ECONNREFUSED 127.0.0.1:6379); reconnecting'],
    ]);
    expect(lines.filter(([level]) => level === 'debug')).toHaveLength(50);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('a socket error then a rejected login: one line each, still one outage', () => {
    const client = new EventEmitter();
    const lines: Array<[string, string]> = [];
    watchRedis(client as unknown as Redis, 'redis://:hunter2@db:6379', (msg, f) => lines.push([f?.level ?? 'info', msg]));
    client.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    for (let i = 0; i < 20; i++) client.emit('error', wrongPass());
    client.emit('ready');
    expect(lines.filter(([level]) => level !== 'debug').map(([level, msg]) => [level, msg.slice(0, 40)])).toEqual([
      ['warn', 'lost the connection to Redis at redis://'],
      ['warn', 'Redis at redis://***@db:6379 rejected th'],
      ['info', 'Redis at redis://***@db:6379 is back aft'],
    ]);
  });

  it('absorbs the connection errors workers report, not other errors', () => {
    const lines: string[] = [];
    const watch = watchRedis(new EventEmitter() as unknown as Redis, 'redis://db:6379', (msg) => lines.push(msg));
    expect(watch.absorb(new Error('Missing lock for job 7. moveToFinished'))).toBe(false);
    expect(watch.absorb(refused())).toBe(true);
    expect(watch.absorb(new Error('Connection is closed.'))).toBe(true);
    expect(lines).toEqual([
      'lost the connection to Redis at redis://db:6379 (connect ECONNREFUSED 127.0.0.1:6379); reconnecting',
      expect.stringMatching(/still unavailable/),
    ]);
  });

  it('sees a rejected password behind a cluster client’s "Failed to refresh slots cache"', () => {
    const cluster = Object.assign(new Error('Failed to refresh slots cache.'), { lastNodeError: wrongPass() });
    expect(isRedisAuthError(cluster)).toBe(true);
    expect(isRedisConnectionError(cluster)).toBe(true);
    const lines: string[] = [];
    watchRedis(new EventEmitter() as unknown as Redis, 'redis-cluster://:hunter2@a:7000,b:7001', (msg) => lines.push(msg)).absorb(cluster);
    expect(lines).toEqual([
      'Redis at redis-cluster://***@a:7000,b:7001 rejected the credentials (Failed to refresh slots cache. (last node: WRONGPASS invalid username-password pair or user is disabled.)); was the password changed? Reconnecting until they are accepted',
    ]);
  });
});

describe('redactUrl', () => {
  it('hides passwords in cluster seed lists and query strings too', () => {
    expect(redactUrl('redis-cluster://user:hunter2@10.0.0.1:7000,10.0.0.2:7000')).toBe('redis-cluster://***@10.0.0.1:7000,10.0.0.2:7000');
    expect(redactUrl('redis://db:6379/0?password=hunter2&db=1')).toBe('redis://db:6379/0?password=***&db=1');
    expect(redactUrl('redis-cluster://10.0.0.1:7000')).toBe('redis-cluster://10.0.0.1:7000');
  });
});
