/** Redis Cluster URLs, pure: seed nodes, credentials and TLS from redis-cluster:// URLs, and the hash-tag prefix check. */
import { describe, expect, it } from 'vitest';
import { assertClusterPrefix, hasHashTag, parseClusterUrl } from '../../queue/redis-connection.js';

describe('cluster URLs and prefixes', () => {
  it('parses seed nodes, credentials and TLS', () => {
    expect(parseClusterUrl('redis-cluster://127.0.0.1:7000,10.0.0.2:7001')).toEqual({
      nodes: [
        { host: '127.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
    expect(parseClusterUrl('rediss-cluster://app:p%40ss@node-a:6380/')).toEqual({
      nodes: [{ host: 'node-a', port: 6380 }],
      username: 'app',
      password: 'p@ss',
      tls: true,
    });
    expect(() => parseClusterUrl('redis-cluster://:secret@node-a')).toThrow(/bad node "node-a" \(expected host:port\)/);
    expect(() => parseClusterUrl('redis-cluster://:secret@node-a')).not.toThrow(/secret/);
  });

  it('requires a hash tag in the prefix on a cluster only', () => {
    expect(hasHashTag('{cascade}')).toBe(true);
    expect(hasHashTag('jobs{cascade}')).toBe(true);
    expect(hasHashTag('cascade')).toBe(false);
    expect(hasHashTag('{}cascade')).toBe(false);
    expect(() => assertClusterPrefix('redis-cluster://h:1', 'cascade')).toThrow('prefix "cascade" has no hash tag: on Redis Cluster use one like "{cascade}"');
    expect(() => assertClusterPrefix('redis://h:1', 'cascade')).not.toThrow();
  });
});
