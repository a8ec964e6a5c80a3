/**
 * Hostile and odd inputs through the real pipeline (`cascade run` code path, real redis-server,
 * real onnxruntime on the generated colour models): every input gets exactly one row, invalid
 * files an error kind and a clear message, odd-but-valid files a label.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { PreprocessSpec } from '../../config/schema.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { ImageDecodeError, preprocessImage } from '../../pipeline/image/preprocess.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { invalidImages, pixelBombPng, validOddImages, writeOddImages, type OddImage } from '../helpers/odd-images.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { startS3 } from '../helpers/s3.js';
import { LOCAL_ONLY } from '../helpers/run-spec.js';

const MAX_BYTES = 300_000;
const EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.avif', '.gif', '.tif', '.tiff', '.bmp'];

const work = withTempDir('hostile');
const redis = withRedis();
const models = withModels(work);
withS3rverCredentials();
let images: string;
let invalid: OddImage[];
let valid: OddImage[];

beforeAll(async () => {
  images = join(work.path, 'images');
  [invalid, valid] = await Promise.all([invalidImages(MAX_BYTES), validOddImages()]);
  await writeOddImages(images, [...invalid, ...valid]);
});

describe('hostile and odd inputs', () => {
  it('every input gets exactly one row: invalid ones an error with a reason, valid ones a label', async () => {
    const config = join(work.path, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        little: colourSpec(models.colourLittle, models.labels),
        big: colourSpec(models.colourBig, models.labels),
        threshold: 0.9,
        batchSize: 5,
        redisUrl: redis.url,
        prefix: uniquePrefix('hostile'),
        limits: { maxBytes: MAX_BYTES },
      }),
    );
    const out = join(work.path, 'out');
    const summary = await runCommand(images, { out, config, progress: false, json: true });

    const all = [...invalid, ...valid];
    expect(summary.images).toBe(all.length);
    expect(summary.errors).toBe(invalid.length);
    const report = await verifyManifest(listSource(images, { extensions: EXTENSIONS }), readManifestLines(out, LOCAL_ONLY));
    expect(report).toMatchObject({ ok: true, sourceKeys: all.length, manifestRows: all.length, errorRows: invalid.length });

    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
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

  it('S3 keys are data: odd keys keep their exact URL as the row key and nothing leaves the output directory', async () => {
    const s3 = await startS3({ buckets: ['hostile'] });
    try {
      const red = valid.find((v) => v.name === 'name with spaces.png')!.bytes;
      // s3rver folds literal '..' segments itself, so the keys that reach us are the ones it keeps.
      const keys = ['in/%2e%2e/%2e%2e/escape.png', 'in/line\nbreak.png', 'in/..%2f..%2fetc%2fx.png', 'in/ ../sp.png', 'in/日本/..png'];
      for (const Key of keys) await s3.client.send(new PutObjectCommand({ Bucket: 'hostile', Key, Body: red }));
      // A folder of its own: what it holds afterwards is exactly what this run wrote.
      const own = await mkdtemp(join(work.path, 's3-case-'));
      const config = join(own, 'config-s3.json');
      await writeFile(
        config,
        JSON.stringify({
          little: colourSpec(models.colourLittle, models.labels),
          big: colourSpec(models.colourBig, models.labels),
          threshold: 0.9,
          batchSize: 2,
          redisUrl: redis.url,
          prefix: uniquePrefix('hostile-s3'),
          s3: { endpoint: s3.endpoint, forcePathStyle: true },
        }),
      );
      const out = join(own, 'out-s3', 'run');
      const summary = await runCommand('s3://hostile/in/', { out, config, progress: false, json: true });
      expect(summary).toMatchObject({ images: keys.length, errors: 0 });
      const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      expect(rows.map((r) => r.key).sort()).toEqual(keys.map((k) => `s3://hostile/${k}`).sort());
      expect(rows.every((r) => r.labelName === 'red')).toBe(true);
      // Everything written stays below the output directory, and no file is named after an input key.
      const files = (await readdir(join(own, 'out-s3'), { recursive: true, withFileTypes: true }))
        .filter((d) => d.isFile())
        .map((d) => relative(join(own, 'out-s3'), join(d.parentPath, d.name)));
      expect(files).toContain('run/manifest.jsonl');
      expect(files.filter((f) => !f.startsWith('run/'))).toEqual([]);
      expect(files.filter((f) => /escape|etc|sp\.png|break/.test(f))).toEqual([]);
      expect((await readdir(own)).sort()).toEqual(['config-s3.json', 'out-s3']);
    } finally {
      await s3.stop();
    }
  });

  it('the pixel limit is checked from the header, before any decode', async () => {
    const spec = PreprocessSpec.parse({ resize: 8, crop: 8 });
    const input = { height: 8, width: 8, dtype: 'float32' as const };
    // A real bomb (all-zero rows, ~50 KB for 400 Mpx): the exact message is the header check's,
    // made before the decoder expands a single row.
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
    await expect(fetchRef(huge, LOCAL_ONLY, { maxBytes: MAX_BYTES })).rejects.toMatchObject({
      name: 'ObjectTooLargeError',
      message: expect.stringMatching(new RegExp(`${MAX_BYTES}`)),
    });
    await expect(fetchRef(huge, LOCAL_ONLY, { maxBytes: 10 * MAX_BYTES })).resolves.toBeInstanceOf(Buffer);
  });
});
