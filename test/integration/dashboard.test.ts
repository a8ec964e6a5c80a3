/**
 * `cascade dashboard`: bull-board served over the queues BullMQ has created under a prefix
 * on a real redis-server, found without any cascade config; safe by default (loopback,
 * read-only, a token required off loopback), writes only with --allow-writes and the token.
 * The Runs page in a browser: run-view.test.ts.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DASHBOARD_HOST, discoverQueues, startDashboard } from '../../cli/commands/dashboard.js';
import { dashboardAccess, isLoopbackHost, presentedToken } from '../../cli/dashboard-access.js';
import { buildProgram } from '../../cli/main.js';
import { CascadeError } from '../../config/errors.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { startOutageProxy } from '../helpers/outage-proxy.js';
import { withTempDir } from '../helpers/fixtures.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';

const work = withTempDir('dashboard');

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('cascade dashboard', () => {
  it('finds the queues under its prefix only, and serves them', async () => {
    const connection = connectRedis(redis.url);
    const prefix = uniquePrefix('dash');
    const queues = ['stage-tiny', 'stage-big'].map((name) => new Queue(name, { connection, prefix }));
    const other = new Queue('stage-elsewhere', { connection, prefix: uniquePrefix('other') });
    await Promise.all([...queues, other].map((q) => q.add('batch', { x: 1 })));
    expect(await discoverQueues(connection, prefix)).toEqual(['merge', 'schedules', 'stage-big', 'stage-tiny']);

    const dashboard = await startDashboard({ redisUrl: redis.url, prefix, port: 0 });
    try {
      // Loopback unless told otherwise, in the function and in the CLI.
      expect(dashboard.address).toBe('127.0.0.1');
      expect(dashboard.queueNames()).toEqual(['merge', 'schedules', 'stage-big', 'stage-tiny']);
      const page = await fetch(`http://127.0.0.1:${dashboard.port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<html/i);
      const api = await fetch(`http://127.0.0.1:${dashboard.port}/api/queues`);
      expect(api.status).toBe(200);
      const body = (await api.json()) as { queues: Array<{ name: string; counts: Record<string, number> }> };
      const tiny = body.queues.find((q) => q.name === 'stage-tiny');
      expect(tiny?.counts.waiting).toBe(1);
      // A queue created later appears on refresh.
      const late = new Queue('stage-late', { connection, prefix });
      await late.add('batch', {});
      await dashboard.refresh();
      expect(dashboard.queueNames()).toContain('stage-late');
      await late.close();
    } finally {
      await dashboard.close();
      await Promise.all([...queues, other].map((q) => q.close()));
      connection.disconnect();
    }
  });

  it('the CLI listens on 127.0.0.1 unless --host is given, and is read-only unless --allow-writes', () => {
    const dashboard = buildProgram().commands.find((c) => c.name() === 'dashboard')!;
    expect(DEFAULT_DASHBOARD_HOST).toBe('127.0.0.1');
    expect(dashboard.options.find((o) => o.long === '--host')?.defaultValue).toBe('127.0.0.1');
    expect(dashboard.options.find((o) => o.long === '--allow-writes')?.defaultValue).toBeUndefined();
  });

  it('read-only by default: every action is refused and changes nothing, bull-board marks the queues read-only', async () => {
    const connection = connectRedis(redis.url);
    const prefix = uniquePrefix('ro');
    const queue = new Queue('stage-little', { connection, prefix });
    await queue.add('batch', { x: 1 });
    const dashboard = await startDashboard({ redisUrl: redis.url, prefix, port: 0 });
    const url = `http://127.0.0.1:${dashboard.port}`;
    try {
      for (const [method, path] of [
        ['PUT', '/api/queues/stage-little/clean/waiting'],
        ['PUT', '/api/queues/stage-little/pause'],
        ['PUT', '/api/queues/stage-little/obliterate'],
        ['PUT', '/api/queues/pause'],
        ['POST', '/api/queues/stage-little/add'],
        ['DELETE', '/api/queues/stage-little/1'],
      ]) {
        const res = await fetch(`${url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: '{}' });
        expect([method, path, res.status]).toEqual([method, path, 403]);
      }
      expect(await queue.getWaitingCount()).toBe(1);
      expect(await queue.isPaused()).toBe(false);
      const api = (await (await fetch(`${url}/api/queues`)).json()) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
      expect(api.queues.find((q) => q.name === 'stage-little')?.readOnlyMode).toBe(true);
    } finally {
      await dashboard.close();
      await queue.close();
      connection.disconnect();
    }
  });

  it('--allow-writes: every request needs the token (bearer or basic-auth password); same-origin writes then act', async () => {
    const connection = connectRedis(redis.url);
    const prefix = uniquePrefix('rw');
    const queue = new Queue('stage-little', { connection, prefix });
    await queue.add('batch', { x: 1 });
    const token = 'tok-0123456789abcdef';
    const access = dashboardAccess(true, { CASCADE_DASHBOARD_TOKEN: token });
    const dashboard = await startDashboard({ redisUrl: redis.url, prefix, port: 0, access });
    const url = `http://127.0.0.1:${dashboard.port}`;
    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    try {
      const anonymous = await fetch(`${url}/api/queues`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      expect((await fetch(`${url}/api/queues/stage-little/pause`, { method: 'PUT' })).status).toBe(401);
      expect((await fetch(`${url}/api/queues/stage-little/pause`, { method: 'PUT', headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
      expect((await fetch(`${url}/api/queues/stage-little/pause`, { method: 'PUT', headers: { authorization: basic('ops', 'wrong') } })).status).toBe(401);
      expect(await queue.isPaused()).toBe(false);
      // A page on another site cannot borrow a browser's saved credentials.
      const cross = await fetch(`${url}/api/queues/stage-little/pause`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, origin: 'https://evil.example' },
      });
      expect(cross.status).toBe(403);
      expect(await queue.isPaused()).toBe(false);

      expect((await fetch(`${url}/api/queues`, { headers: { authorization: basic('ops', token) } })).status).toBe(200);
      const pause = await fetch(`${url}/api/queues/stage-little/pause`, { method: 'PUT', headers: { authorization: `Bearer ${token}` } });
      expect(pause.status).toBe(200);
      expect(await queue.isPaused()).toBe(true);
      const resume = await fetch(`${url}/api/queues/stage-little/resume`, {
        method: 'PUT',
        headers: { authorization: basic('ops', token), origin: url },
      });
      expect(resume.status).toBe(200);
      expect(await queue.isPaused()).toBe(false);
    } finally {
      await dashboard.close();
      await queue.close();
      connection.disconnect();
    }
  });

  it('refuses --allow-writes without a token in the environment, and a short token', () => {
    expect(() => dashboardAccess(true, {})).toThrow(CascadeError);
    expect(() => dashboardAccess(true, {})).toThrow(/--allow-writes needs a token: set CASCADE_DASHBOARD_TOKEN/);
    expect(() => dashboardAccess(false, { CASCADE_DASHBOARD_TOKEN: 'short' })).toThrow(/too short/);
    expect(dashboardAccess(false, {})).toEqual({ allowWrites: false, token: undefined });
    expect(presentedToken(`Basic ${Buffer.from('a:b:c').toString('base64')}`)).toBe('b:c');
    expect(presentedToken('Bearer abc')).toBe('abc');
    expect(presentedToken('Digest abc')).toBeUndefined();
  });

  it('off loopback the CLI refuses to start without a token (exit 2, one line); a token or --allow-anonymous lets it serve', async () => {
    const config = join(work.path, 'cascade.yaml');
    await writeFile(config, `redisUrl: ${redis.url}\nprefix: ${uniquePrefix('host')}\n`);
    const env = { REDIS_URL: '', CASCADE_DASHBOARD_TOKEN: '', CASCADE_LOG_LEVEL: 'info' };
    const args = ['dashboard', '--host', '0.0.0.0', '--port', '0', '--config', config];
    const refused = await promisify(execFile)(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, ...env }, timeout: 30_000 }).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      'cascade: cascade dashboard --host 0.0.0.0 would serve job data to anyone who can connect: set CASCADE_DASHBOARD_TOKEN (16+ characters), or pass --allow-anonymous when a proxy or a loopback-only port restricts access\n',
    );
    expect(refused.stdout).toBe('');

    // With the token it serves every interface, and every request, the Runs page included, needs it.
    const token = 'tok-0123456789abcdef';
    const withToken = spawnCascade(args, { ...env, CASCADE_DASHBOARD_TOKEN: token });
    try {
      const port = Number((await withToken.waitFor(/dashboard on http:\/\/0\.0\.0\.0:(\d+)\/ \(read-only, token required\)/))[1]);
      expect((await fetch(`http://127.0.0.1:${port}/runs`)).status).toBe(401);
      const page = await fetch(`http://127.0.0.1:${port}/runs`, { headers: { authorization: `Bearer ${token}` } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('no runs yet');
    } finally {
      expect(await withToken.stop()).toEqual({ code: 0, signal: null });
    }
    expect(withToken.output()).not.toContain(token);

    // --allow-anonymous: the operator vouches that something else restricts who connects.
    const anonymous = spawnCascade([...args, '--allow-anonymous'], env);
    try {
      const port = Number((await anonymous.waitFor(/dashboard on http:\/\/0\.0\.0\.0:(\d+)\/ \(read-only\)/))[1]);
      expect((await fetch(`http://127.0.0.1:${port}/runs`)).status).toBe(200);
    } finally {
      expect(await anonymous.stop()).toEqual({ code: 0, signal: null });
    }
  }, 90_000);

  it('the Runs page answers 503 in one line while Redis is away, and the runs again once it is back', async () => {
    const proxy = await startOutageProxy(redis.port);
    const dashboard = await startDashboard({ redisUrl: `redis://${proxy.address}`, prefix: uniquePrefix('away'), port: 0, runsTimeoutMs: 500 });
    const url = `http://127.0.0.1:${dashboard.port}/runs`;
    try {
      expect((await fetch(url)).status).toBe(200);
      proxy.down();
      const away = await fetch(url);
      expect(away.status).toBe(503);
      expect(await away.text()).toBe('cascade: cannot read the runs from Redis now; see the dashboard log\n');
      proxy.up();
      let back = await fetch(url);
      // ioredis reconnects with a backoff: the page answers 503 until it has.
      for (let i = 0; i < 40 && back.status !== 200; i++) back = await fetch(url);
      expect(back.status).toBe(200);
      expect(await back.text()).toContain('no runs yet');
    } finally {
      await dashboard.close();
      await proxy.close();
    }
  }, 60_000);

  it('loopback is localhost, 127.0.0.0/8 and ::1 only', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'dashboard.example', '::ffff:10.0.0.1', '128.0.0.1'])
      expect(isLoopbackHost(host), host).toBe(false);
  });
});
