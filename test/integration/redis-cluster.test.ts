/**
 * A real 3-master Redis Cluster on loopback running the unchanged pipeline under a hash-tagged
 * prefix (the cluster URL parsing and prefix check: unit/redis-url.test.ts; passwords and TLS,
 * on a cluster too: redis-auth.test.ts).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { stageQueuePlace } from '../../queue/queue-shards.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { completedJobIds } from '../helpers/queue-events.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { LOCAL_ONLY } from '../helpers/run-spec.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

describe('pipeline on a 3-master Redis Cluster', () => {
  let dir: string;
  let images: string;
  let models: TestModels;
  let cluster: TestRedisCluster;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-cluster-run-'));
    images = join(dir, 'images');
    await mkdir(images, { recursive: true });
    const colours = [
      { r: 255, g: 0, b: 0 },
      { r: 0, g: 255, b: 0 },
      { r: 0, g: 0, b: 255 },
      { r: 128, g: 128, b: 128 },
    ];
    for (let i = 0; i < 10; i++)
      await writeFile(
        join(images, `img-${i}.png`),
        await sharp({ create: { width: 9, height: 9, channels: 3, background: colours[i % 4]! } })
          .png()
          .toBuffer(),
      );
    await writeFile(join(images, 'broken.png'), 'not a png');
    [models, cluster] = await Promise.all([writeTestModels(join(dir, 'models')), startRedisCluster()]);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function config(prefix: string, extra: Record<string, unknown> = {}): Promise<string> {
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(
      file,
      JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 3, redisUrl: cluster.url, prefix, ...extra }),
    );
    return file;
  }

  it('runs unchanged with a hash-tagged prefix and passes verify', async () => {
    const out = join(dir, 'out');
    const summary = await runCommand(images, { out, config: await config('{cascade}'), progress: false, json: true });
    expect(summary).toMatchObject({ images: 11, errors: 1 });
    expect(summary.stages[0]).toMatchObject({ images: 11, accepted: 8, forwarded: 2, errors: 1 });
    expect(summary.stages[1]).toMatchObject({ images: 2, accepted: 2 });
    const report = await verifyManifest(listSource(images, { extensions: ['.png'] }), readManifestLines(out, LOCAL_ONLY));
    expect(report).toMatchObject({ ok: true, sourceKeys: 11, manifestRows: 11, errorRows: 1 });
  }, 60_000);

  it('shards each stage queue over 3 hash tags: every image labelled once, the shards on more than one node, each shard consumed', async () => {
    const out = join(dir, 'out-shards');
    const summary = await runCommand(images, { out, config: await config('{shardrun}', { queues: { shards: 3 } }), progress: false, json: true });
    expect(summary).toMatchObject({ images: 11, errors: 1 });
    expect(summary.stages[0]).toMatchObject({ images: 11, accepted: 8, forwarded: 2, errors: 1 });
    const report = await verifyManifest(listSource(images, { extensions: ['.png'] }), readManifestLines(out, LOCAL_ONLY));
    expect(report).toMatchObject({ ok: true, sourceKeys: 11, manifestRows: 11, errorRows: 1 });

    // Each node's own keys (KEYS on a node lists only the slots it serves).
    const nodeOf = new Map<string, number>();
    for (const port of cluster.ports) {
      const node = new Redis({ host: '127.0.0.1', port });
      try {
        for (const key of await node.keys('shardrun:stage-little-*:meta')) nodeOf.set(key, port);
      } finally {
        node.disconnect();
      }
    }
    const shardMeta = [0, 1, 2].map((k) => {
      const place = stageQueuePlace('{shardrun}', 'little', k, 3);
      return `${place.prefix}:${place.name}:meta`;
    });
    expect([...nodeOf.keys()].sort()).toEqual([...shardMeta].sort());
    expect(new Set(nodeOf.values()).size).toBeGreaterThan(1);

    // 4 batches of 3 go to shards 0, 1, 2, 0: every shard's worker completed its own.
    const connection = connectRedis(cluster.url);
    try {
      const completed = await Promise.all(
        [0, 1, 2].map(async (k) => {
          const place = stageQueuePlace('{shardrun}', 'little', k, 3);
          return (await completedJobIds(connection, place.prefix, place.name)).length;
        }),
      );
      expect(completed).toEqual([2, 1, 1]);
    } finally {
      connection.disconnect();
    }
  }, 60_000);

  it('refuses a prefix without a hash tag with a clear error', async () => {
    await expect(runCommand(images, { out: join(dir, 'out-bad'), config: await config('cascade'), progress: false })).rejects.toThrow(
      /prefix "cascade" has no hash tag/,
    );
    // Commands that only track runs (submit, status) meet the same check through the tracker.
    const connection = connectRedis(cluster.url);
    try {
      expect(() => new RunTracker(connection, 'cascade')).toThrow(/prefix "cascade" has no hash tag/);
      expect(() => new RunTracker(connection, '{cascade}')).not.toThrow();
    } finally {
      connection.disconnect();
    }
  });
});
