/**
 * KEDA scales a stage on the length of `<prefix>:<queue>:wait` (unit/k8s-manifests.test.ts checks
 * that the k8s manifests name that key): check against a real redis-server that BullMQ really
 * keeps a queue's waiting jobs there, as a LIST.
 */
import { Queue } from 'bullmq';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { configuredStages } from '../../config/stages.js';
import { stageQueueName } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { startRedis, uniquePrefix } from '../helpers/redis.js';

const DOCKER = resolve(import.meta.dirname, '..', '..', 'docker');

describe('docker/k8s KEDA trigger', () => {
  it('BullMQ keeps waiting jobs in the LIST KEDA reads', async () => {
    const redis = await startRedis();
    const connection = connectRedis(redis.url);
    const stages = configuredStages(await loadConfig({ file: join(DOCKER, 'cascade.yaml'), env: { CASCADE_ASSETS: '/assets' } }));
    // The images use the default prefix; any prefix keeps the same layout.
    const prefix = uniquePrefix('keda');
    const name = stageQueueName(stages[0]!.name);
    const queue = new Queue(name, { connection, prefix });
    try {
      await queue.addBulk([1, 2, 3].map((i) => ({ name: 'batch', data: { i } })));
      expect(name).toBe('stage-little');
      expect(await connection.type(`${prefix}:${name}:wait`)).toBe('list');
      expect(await connection.llen(`${prefix}:${name}:wait`)).toBe(3);
    } finally {
      await queue.close();
      connection.disconnect();
      await redis.stop();
    }
  });
});
