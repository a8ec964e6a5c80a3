import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisServerNotFoundError, startPrivateRedis } from '../../cli/private-redis.js';
import { startRedis } from '../helpers/redis.js';

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startPrivateRedis', () => {
  it('starts a loopback, non-persistent server and stops it cleanly', async () => {
    const redis = await startPrivateRedis();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const client = new Redis(redis.url, { maxRetriesPerRequest: 0, lazyConnect: true });
    try {
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(await client.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
      const [, dir] = (await client.config('GET', 'dir')) as [string, string];
      expect(dir).toMatch(/cascade-redis-/);
      await client.set('k', 'v');
      expect(await client.get('k')).toBe('v');
      client.disconnect();
      await redis.stop();
      expect(alive(redis.pid)).toBe(false);
      expect(await canConnect(redis.port)).toBe(false);
      await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
      await redis.stop(); // idempotent
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });

  it('gives concurrent servers distinct ports', async () => {
    const servers = await Promise.all([startPrivateRedis(), startPrivateRedis(), startPrivateRedis()]);
    try {
      expect(new Set(servers.map((s) => s.port)).size).toBe(3);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  it('explains a missing redis-server binary', async () => {
    const err = await startPrivateRedis({ redisServer: '/nonexistent/redis-server' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerNotFoundError);
    expect((err as Error).message).toMatch(/"\/nonexistent\/redis-server" was not found\. Install Redis .* or set REDIS_URL/);
  });

  it('reports a taken port when one was asked for explicitly', async () => {
    const first = await startPrivateRedis();
    try {
      await expect(startPrivateRedis({ port: first.port })).rejects.toThrow(
        /exited with code 1 while starting on 127\.0\.0\.1:\d+:[\s\S]*Address already in use/,
      );
    } finally {
      await first.stop();
    }
  });

  it('kills a server that never answers within the start timeout', async () => {
    // A redis-server told to bind elsewhere never answers on the port we poll.
    const err = await startPrivateRedis({
      startTimeoutMs: 300,
      extraArgs: ['--port', '0', '--unixsocket', `/tmp/cascade-redis-test-${process.pid}.sock`],
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/did not answer on 127\.0\.0\.1:\d+ in time/);
    // pgrep exits 1 when no process matches: the unanswering server is gone.
    expect(spawnSync('pgrep', ['-f', `cascade-redis-test-${process.pid}.sock`]).status).toBe(1);
    await fs.rm(`/tmp/cascade-redis-test-${process.pid}.sock`, { force: true });
  });
});

describe('test helper startRedis', () => {
  it('hands out a working private server', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    try {
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });
});
