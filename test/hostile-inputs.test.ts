/**
 * Hostile and odd inputs through the real pipeline (`cascade run` code path, real redis-server,
 * real onnxruntime on the generated colour models): every input gets exactly one row, invalid
 * files an error kind and a clear message, odd-but-valid files a label.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../cli/commands/run.js';
import { PreprocessSpec } from '../config/schema.js';
import { fetchRef } from '../pipeline/fetch-image.js';
import { ManifestRow } from '../pipeline/manifest.js';
import { ImageDecodeError, preprocessImage } from '../pipeline/preprocess.js';
import { readManifestLines, verifyManifest } from '../pipeline/verify-manifest.js';
import { listSource } from '../producers/list-source.js';
import { invalidImages, pixelBombPng, validOddImages, writeOddImages, type OddImage } from './helpers/odd-images.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { writeTestModels, type TestModels } from './helpers/test-models.js';

const MAX_BYTES = 300_000;
const EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.avif', '.gif', '.tif', '.tiff', '.bmp'];

let dir: string;
let images: string;
let models: TestModels;
let redis: TestRedis;
let invalid: OddImage[];
let valid: OddImage[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-hostile-'));
  images = join(dir, 'images');
  [models, redis, invalid, valid] = await Promise.all([writeTestModels(join(dir, 'models')), startRedis(), invalidImages(MAX_BYTES), validOddImages()]);
  await writeOddImages(images, [...invalid, ...valid]);
});

afterAll(async () => {
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('hostile and odd inputs', () => {
  it('every input gets exactly one row: invalid ones an error with a reason, valid ones a label', async () => {
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });
    const config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 5, redisUrl: redis.url, prefix: 'hostile', limits: { maxBytes: MAX_BYTES } }));
    const out = join(dir, 'out');
    const summary = await runCommand(images, { out, config, progress: false, json: true });

    const all = [...invalid, ...valid];
    expect(summary.images).toBe(all.length);
    expect(summary.errors).toBe(invalid.length);
    const report = await verifyManifest(listSource(images, { extensions: EXTENSIONS }), readManifestLines(out, () => undefined as never));
    expect(report).toMatchObject({ ok: true, sourceKeys: all.length, manifestRows: all.length, errorRows: invalid.length });

    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n').map((l) => ManifestRow.parse(JSON.parse(l)));
    const byKey = new Map(rows.map((r) => [r.key, r]));
    for (const img of invalid) {
      const row = byKey.get(join(images, img.name))!;
      expect(row.error, img.name).toMatchObject({ kind: img.error!.kind });
      expect(row.error!.message, img.name).toMatch(img.error!.message);
      expect(row.label, img.name).toBeNull();
    }
    for (const img of valid) {
      const row = byKey.get(join(images, img.name))!;
      expect(row.error, `${img.name}: ${row.error?.message}`).toBeNull();
      expect(row.labelName, img.name).toBe(img.label);
    }
  });

  it('the pixel limit is checked from the header, before any decode', async () => {
    const spec = PreprocessSpec.parse({ resize: 8, crop: 8 });
    const input = { height: 8, width: 8, dtype: 'float32' as const };
    // The bomb's IDAT is empty: a full decode would fail as corrupt/truncated, so only a
    // header check can name its size.
    const err = await preprocessImage(pixelBombPng(20000, 20000), spec, input, { maxPixels: 100_000_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect(err).toMatchObject({ reason: 'too-many-pixels', message: 'image is 20000x20000, over the 100000000 pixel limit' });
    // The limit is configurable: a valid panorama becomes too large under a small one.
    const wide = valid.find((v) => v.name === 'panorama-wide.png')!;
    await expect(preprocessImage(wide.bytes, spec, input, { maxPixels: 10_000 })).rejects.toMatchObject({ reason: 'too-many-pixels' });
    await expect(preprocessImage(wide.bytes, spec, input, { maxPixels: 32_000 })).resolves.toHaveLength(3 * 64);
  });

  it('the byte limit is checked before reading the file', async () => {
    const huge = join(images, 'huge-file.png');
    await expect(fetchRef(huge, { s3: () => undefined as never }, { maxBytes: MAX_BYTES })).rejects.toMatchObject({ name: 'ObjectTooLargeError', message: expect.stringMatching(new RegExp(`${MAX_BYTES}`)) });
    await expect(fetchRef(huge, { s3: () => undefined as never }, { maxBytes: 10 * MAX_BYTES })).resolves.toBeInstanceOf(Buffer);
  });
});
