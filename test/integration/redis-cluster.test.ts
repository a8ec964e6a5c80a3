/**
 * A real 3-master Redis Cluster on loopback running the unchanged pipeline under a hash-tagged
 * prefix (the cluster URL parsing and prefix check: unit/redis-url.test.ts; passwords and TLS,
 * on a cluster too: redis-auth.test.ts).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
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

  async function config(prefix: string): Promise<string> {
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(
      file,
      JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 3, redisUrl: cluster.url, prefix }),
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
