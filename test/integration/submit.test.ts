/**
 * `cascade submit` against a real redis-server with generated models: it only enqueues (no
 * worker runs here), takes threshold and metric from a calib.json, derives the same run id as
 * `cascade run`, and adds nothing when submitted twice.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { submitCommand } from '../../cli/commands/submit.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { calibFile } from '../helpers/calib-file.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { COLOUR_MODEL_MACS } from '../helpers/test-models.js';

const work = withTempDir('submit');
const redis = withRedis();
const models = withModels(work);
let images: string;
let config: string;
const prefix = uniquePrefix('submit');
const N = 5;

beforeAll(async () => {
  images = join(work.path, 'images');
  await mkdir(images);
  for (let i = 0; i < N; i++) {
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: i * 40, b: 0 } } })
      .png()
      .toFile(join(images, `${i}.png`));
  }
  config = join(work.path, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify({
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      threshold: 0.9,
      batchSize: 2,
      redisUrl: redis.url,
      prefix,
    }),
  );
});

describe('cascade submit', () => {
  it('enqueues the batches and prints the run id; a second submit adds nothing', async () => {
    const out: string[] = [];
    const first = await submitCommand(images, { out: join(work.path, 'out-a'), config, runId: 'sub-1' }, (t) => out.push(t));
    expect(out).toEqual(['sub-1\n']);
    expect(first).toMatchObject({ runId: 'sub-1', images: N, batches: 3, alreadySubmitted: false });
    const again = await submitCommand(images, { out: join(work.path, 'out-a'), config, runId: 'sub-1', json: true }, (t) => out.push(t));
    expect(JSON.parse(out[1]!)).toMatchObject({ runId: 'sub-1', images: N, batches: 3, alreadySubmitted: true, out: join(work.path, 'out-a') });
    expect(again.alreadySubmitted).toBe(true);
    const connection = connectRedis(redis.url);
    const queues = new CascadeQueues(connection, prefix);
    try {
      expect(await queues.stage('little').getJobCounts('waiting')).toEqual({ waiting: 3 });
      const spec = (await new RunTracker(connection, prefix).spec('sub-1'))!;
      expect(spec.stages.map((s) => [s.name, s.threshold])).toEqual([
        ['little', 0.9],
        ['big', null],
      ]);
      // GMACs were counted from the graphs, without opening an inference session.
      expect(spec.stages.map((s) => s.gmacsPerImage)).toEqual([COLOUR_MODEL_MACS / 1e9, COLOUR_MODEL_MACS / 1e9]);
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });

  it('--calibration sets threshold and metric; flags still win', async () => {
    const calib = join(work.path, 'calib.json');
    const calibration = calibFile({
      little: { name: 'little', path: models.colourLittle, gmacsPerImage: 0.0001 },
      big: { name: 'big', path: models.colourBig, gmacsPerImage: 0.0002 },
      metric: 'margin',
      threshold: 0.75,
    });
    await writeFile(calib, JSON.stringify(calibration));
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    try {
      await submitCommand(images, { out: join(work.path, 'out-c'), config, calibration: calib, runId: 'sub-cal' }, () => undefined);
      const spec = (await tracker.spec('sub-cal'))!;
      expect([spec.stages[0]!.threshold, spec.metric]).toEqual([0.75, 'margin']);
      await submitCommand(images, { out: join(work.path, 'out-d'), config, calibration: calib, threshold: 0.6, runId: 'sub-flag' }, () => undefined);
      expect((await tracker.spec('sub-flag'))!.stages[0]!.threshold).toBe(0.6);
    } finally {
      connection.disconnect();
    }
  });

  it('derives the run id `cascade run` does: a run started with the same arguments picks the submitted run up', async () => {
    const out = join(work.path, 'out-same');
    const submitted = await submitCommand(images, { out, config }, () => undefined);
    const summary = await runCommand(images, { out, config, progress: false, json: true });
    expect(summary.runId).toBe(submitted.runId);
    expect(summary.images).toBe(N);
  });

  it('refuses to run without a shared Redis', async () => {
    const noRedis = join(work.path, 'no-redis.json');
    const { redisUrl: _, ...rest } = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
    await writeFile(noRedis, JSON.stringify(rest));
    await expect(submitCommand(images, { out: join(work.path, 'x'), config: noRedis }, () => undefined)).rejects.toThrow(
      /cascade submit needs a shared Redis: set REDIS_URL/,
    );
  });
});
