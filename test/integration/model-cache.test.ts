/**
 * The model cache a worker labels with: models read from s3:// (real s3rver) are hash-checked,
 * kept as files named by their hash, and shared by content; the cache stays within its
 * capacity without closing a model in use.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../../config/load-config.js';
import { ModelCache } from '../../pipeline/models/model-cache.js';
import { planModel } from '../../pipeline/models/plan-model.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import { withModels, withS3, withTempDir } from '../helpers/fixtures.js';

const work = withTempDir('model-cache');
const s3 = withS3({ buckets: ['models'] });
const models = withModels(work);

const cache = (capacity: number, downloadDir = join(work.path, 'downloads')) =>
  new ModelCache({
    runtime: { executionProviders: ['cpu'], threads: 1, intraOpThreads: 1 },
    capacity,
    read: (ref) => fetchRef(ref, s3.stores),
    downloadDir,
  });

beforeAll(async () => {
  for (const [key, file] of [
    ['colour-little.onnx', models.colourLittle],
    ['colour-big.onnx', models.colourBig],
    ['labels.txt', models.labels],
  ] as const) {
    await s3.client.send(new PutObjectCommand({ Bucket: 'models', Key: key, Body: await readFile(file) }));
  }
});

describe('ModelCache', () => {
  it('pins and opens a model named by s3:// URL, keeping it as a file named by its sha256', async () => {
    const file = join(work.path, 'little.json');
    await writeFile(
      file,
      JSON.stringify({
        path: 's3://models/colour-little.onnx',
        labels: 's3://models/labels.txt',
        preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] },
      }),
    );
    const inline = await loadModelSpec(file, {});
    // s3:// paths are kept as written, not resolved against the spec's folder.
    expect([inline.path, inline.labels]).toEqual(['s3://models/colour-little.onnx', 's3://models/labels.txt']);
    const planner = cache(2, join(work.path, 'planner'));
    const { pin } = await planModel('little', inline, 'exact', planner);
    await planner.close();
    const sha = createHash('sha256')
      .update(await readFile(models.colourLittle))
      .digest('hex');
    expect(pin).toMatchObject({ path: 's3://models/colour-little.onnx', sha256: sha, labels: { path: 's3://models/labels.txt' } });

    const worker = cache(2);
    const lease = await worker.acquire('little', pin, 'exact', 0.002, 'run-s3');
    try {
      expect(lease.probe).toEqual({ maxDiff: 0, top1Changed: [], ok: true });
      expect(lease.model.labels).toEqual(['red', 'green', 'blue', 'other']);
      expect(await readdir(join(work.path, 'downloads'))).toEqual([`${sha}.onnx`]);
    } finally {
      lease.release();
      await worker.close();
    }
  });

  it('shares a session between stages by content but keeps each stage name and preprocessing; closes idle models beyond capacity, never one in use', async () => {
    const planner = cache(4, join(work.path, 'planner2'));
    const little = (
      await planModel(
        'little',
        await loadModelSpecFrom({ path: models.colourLittle, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } }),
        'exact',
        planner,
      )
    ).pin;
    const big = (
      await planModel(
        'big',
        await loadModelSpecFrom({ path: models.colourBig, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } }),
        'exact',
        planner,
      )
    ).pin;
    // The same file as another stage, with its own preprocessing (and so its own probe reference).
    const mid = (
      await planModel(
        'mid',
        await loadModelSpecFrom({ path: models.colourLittle, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } }),
        'exact',
        planner,
      )
    ).pin;
    await planner.close();
    const worker = cache(1);
    try {
      const a = await worker.acquire('little', little, 'exact', 0.002, 'r1');
      // One session, two views; each pin's probe is run with its own preprocessing, not the first one's.
      const again = await worker.acquire('mid', mid, 'exact', 0.002, 'r1');
      await expect(worker.acquire('mid', { ...mid, probe: little.probe }, 'exact', 0.002, 'r1')).rejects.toThrow(/stage mid refuses model/);
      expect([a.model.name, again.model.name, again.model.preprocess.kernel]).toEqual(['little', 'mid', 'nearest']);
      expect(again.model.pool).toBe(a.model.pool);
      // A second model while the first is in use: both stay open for now.
      const b = await worker.acquire('big', big, 'exact', 0.002, 'r1');
      expect(worker.size).toBe(2);
      a.release();
      again.release();
      await new Promise((r) => setTimeout(r, 50));
      expect(worker.size).toBe(1);
      b.release();
    } finally {
      await worker.close();
    }
  });
});

/** Validate an inline model spec the way the config loader does. */
async function loadModelSpecFrom(raw: object) {
  const { ModelSpec } = await import('../../config/schema.js');
  return ModelSpec.parse(raw);
}
