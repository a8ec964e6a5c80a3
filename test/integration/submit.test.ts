/**
 * `cascade submit` against a real redis-server with generated models: it only enqueues (no
 * worker runs here), takes threshold and metric from a calib.json, derives the same run id as
 * `cascade run`, and adds nothing when submitted twice.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { submitCommand } from '../../cli/commands/submit.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { COLOUR_MODEL_MACS, writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let images: string;
let models: TestModels;
let redis: TestRedis;
let config: string;
const prefix = uniquePrefix('submit');
const N = 5;

/** A calib.json as `cascade calibrate` writes it, for the generated models. */
function calibration(threshold: number, metric: string) {
  const point = {
    images: 10,
    fractionToBig: 0.4,
    gmacsPerImage: 0.001,
    saved: 0.5,
    agreement: 0.99,
    agreementInterval: { low: 0.95, high: 1 },
    accuracy: null,
    littleAccuracy: null,
    bigAccuracy: null,
    oracleSaved: null,
  };
  return {
    version: 1,
    createdAt: '2026-01-01T00:00:00.000Z',
    little: { name: 'little', path: models.colourLittle, gmacsPerImage: 0.0001 },
    big: { name: 'big', path: models.colourBig, gmacsPerImage: 0.0002 },
    rule: 'label-free',
    reason: 'test',
    metric,
    threshold,
    settings: { maxDrop: 0, targetAgreement: 0.99, metrics: ['maxprob', 'margin', 'entropy'], z: 1.96, calibrationFraction: 0.5 },
    expected: point,
    test: null,
    skippedImages: 0,
    files: { curveJson: 'curve.json', curveCsv: 'curve.csv', plot: 'curve.svg' },
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-submit-'));
  images = join(dir, 'images');
  await mkdir(images);
  models = await writeTestModels(join(dir, 'models'));
  redis = await startRedis();
  for (let i = 0; i < N; i++) {
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: i * 40, b: 0 } } })
      .png()
      .toFile(join(images, `${i}.png`));
  }
  const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
  config = join(dir, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 2, redisUrl: redis.url, prefix }),
  );
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('cascade submit', () => {
  it('enqueues the batches and prints the run id; a second submit adds nothing', async () => {
    const out: string[] = [];
    const first = await submitCommand(images, { out: join(dir, 'out-a'), config, runId: 'sub-1' }, (t) => out.push(t));
    expect(out).toEqual(['sub-1\n']);
    expect(first).toMatchObject({ runId: 'sub-1', images: N, batches: 3, alreadySubmitted: false });
    const again = await submitCommand(images, { out: join(dir, 'out-a'), config, runId: 'sub-1', json: true }, (t) => out.push(t));
    expect(JSON.parse(out[1]!)).toMatchObject({ runId: 'sub-1', images: N, batches: 3, alreadySubmitted: true, out: join(dir, 'out-a') });
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
    const calib = join(dir, 'calib.json');
    await writeFile(calib, JSON.stringify(calibration(0.75, 'margin')));
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    try {
      await submitCommand(images, { out: join(dir, 'out-c'), config, calibration: calib, runId: 'sub-cal' }, () => undefined);
      const spec = (await tracker.spec('sub-cal'))!;
      expect([spec.stages[0]!.threshold, spec.metric]).toEqual([0.75, 'margin']);
      await submitCommand(images, { out: join(dir, 'out-d'), config, calibration: calib, threshold: 0.6, runId: 'sub-flag' }, () => undefined);
      expect((await tracker.spec('sub-flag'))!.stages[0]!.threshold).toBe(0.6);
    } finally {
      connection.disconnect();
    }
  });

  it('derives the run id `cascade run` does: a run started with the same arguments picks the submitted run up', async () => {
    const out = join(dir, 'out-same');
    const submitted = await submitCommand(images, { out, config }, () => undefined);
    const summary = await runCommand(images, { out, config, progress: false, json: true });
    expect(summary.runId).toBe(submitted.runId);
    expect(summary.images).toBe(N);
  });

  it('refuses to run without a shared Redis', async () => {
    const noRedis = join(dir, 'no-redis.json');
    const { redisUrl: _, ...rest } = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
    await writeFile(noRedis, JSON.stringify(rest));
    await expect(submitCommand(images, { out: join(dir, 'x'), config: noRedis }, () => undefined)).rejects.toThrow(
      /cascade submit needs a shared Redis: set REDIS_URL/,
    );
  });
});
