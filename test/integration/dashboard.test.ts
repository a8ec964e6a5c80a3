/**
 * `cascade dashboard`: bull-board served over the queues BullMQ has created under a prefix
 * on a real redis-server, found without any cascade config.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverQueues, startDashboard } from '../../cli/commands/dashboard.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';

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

    const dashboard = await startDashboard({ redisUrl: redis.url, prefix, port: 0, host: '127.0.0.1' });
    try {
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
});
