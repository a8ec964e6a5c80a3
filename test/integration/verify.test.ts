/**
 * `cascade verify` (the built CLI) on a real run's output, clean and tampered with, local and on
 * S3 (the checker on synthetic manifests: unit/verify-manifest.test.ts).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { S3RVER_ENV, startS3, type TestS3 } from '../helpers/s3.js';
import { writeTestModels } from '../helpers/test-models.js';
import { colourSpec } from '../helpers/colour-fixture.js';

const execFileP = promisify(execFile);

function row(key: string, over: Partial<ManifestRow> = {}): string {
  return JSON.stringify({ key, label: 0, labelName: 'red', confidence: 0.9, stage: 'little', top5: [{ label: 0, name: 'red', p: 0.9 }], error: null, ...over });
}

describe('cascade verify on a real run', () => {
  let dir: string;
  let images: string;
  let out: string;
  let redis: TestRedis;
  let s3: TestS3;
  const env = () => ({ ...process.env, CASCADE_S3_ENDPOINT: s3.endpoint, ...S3RVER_ENV });
  const verify = async (...args: string[]) => {
    try {
      const { stdout } = await execFileP(process.execPath, ['bin/cascade.js', 'verify', ...args], { env: env(), timeout: 30_000 });
      return { code: 0, stdout, stderr: '' };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-verify-'));
    images = join(dir, 'images');
    out = join(dir, 'out');
    await mkdir(join(images, 'sub'), { recursive: true });
    const names = ['a.png', 'b c.png', 'sub/é.png', 'broken.jpg', 'notes.md'];
    for (const [i, name] of names.entries()) {
      const body =
        name === 'broken.jpg'
          ? Buffer.from('nope')
          : name.endsWith('.md')
            ? Buffer.from('# not listed')
            : await sharp({ create: { width: 9, height: 9, channels: 3, background: { r: 40 * i, g: 0, b: 200 } } })
                .png()
                .toBuffer();
      await writeFile(join(images, name), body);
    }
    const models = await writeTestModels(join(dir, 'models'));
    [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['verify'] })]);
    const spec = (path: string) => colourSpec(path, models.labels);
    const config = join(dir, 'config.json');
    await writeFile(
      config,
      JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), batchSize: 2, redisUrl: redis.url, prefix: uniquePrefix('verify') }),
    );
    await runCommand(images, { out, config, progress: false, json: true });
  });

  afterAll(async () => {
    await Promise.allSettled([redis?.stop(), s3?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('passes on the run output (directory or file), exit code 0', async () => {
    const r = await verify('--manifest', out, '--source', images);
    expect(r.stdout).toMatch(/^OK: 4 inputs, 4 manifest rows \(1 with an image error\); missing 0, duplicate 0, unknown 0, invalid 0/);
    expect(r.code).toBe(0);
    const j = await verify('--manifest', join(out, 'manifest.jsonl'), '--source', images, '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, sourceKeys: 4, manifestRows: 4 });
  });

  it('fails with exit code 1 on a tampered manifest, naming the keys', async () => {
    const lines = (await readFile(join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n');
    const tampered = join(dir, 'tampered.jsonl');
    // Drop row 0, double row 1, add a key from nowhere.
    await writeFile(tampered, [lines[1], lines[1], lines[2], lines[3], row(join(images, 'ghost.png'))].join('\n'));
    const r = await verify('--manifest', tampered, '--source', images, '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.counts).toEqual({ missing: 1, duplicate: 1, unknown: 1, invalid: 0 });
    expect(report.missing).toEqual([JSON.parse(lines[0]!).key]);
    expect(report.unknown).toEqual([join(images, 'ghost.png')]);
  });

  it("lists the source with the config file's extensions; --extensions wins", async () => {
    const cfg = join(dir, 'png-only.yaml');
    await writeFile(cfg, 'extensions: [".png"]\nlittle: ignored.onnx\n');
    const r = await verify('--manifest', out, '--source', images, '--config', cfg, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ sourceKeys: 3, counts: { unknown: 1 }, unknown: [join(images, 'broken.jpg')] });
    const flag = await verify('--manifest', out, '--source', images, '--config', cfg, '--extensions', 'png,JPG');
    expect(flag.code).toBe(0);
    const bad = await verify('--manifest', out, '--source', images, '--extensions', '.j p g');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--extensions: expected extensions like \.jpg,\.png/);
  });

  it('checks a manifest on S3 against an S3 source', async () => {
    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ManifestRow);
    const rel = (key: string) => key.slice(images.length + 1);
    for (const r of rows) await s3.client.send(new PutObjectCommand({ Bucket: 'verify', Key: `in/${rel(r.key)}`, Body: 'x' }));
    const s3Manifest = rows.map((r) => JSON.stringify({ ...r, key: `s3://verify/in/${rel(r.key)}` })).join('\n');
    await s3.client.send(new PutObjectCommand({ Bucket: 'verify', Key: 'out/manifest.jsonl', Body: s3Manifest }));
    const ok = await verify('--manifest', 's3://verify/out', '--source', 's3://verify/in');
    expect(ok.stdout).toMatch(/^OK: 4 inputs/);
    expect(ok.code).toBe(0);
    const missing = await verify('--manifest', 's3://verify/out/nothing.jsonl', '--source', 's3://verify/in');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/not found: s3:\/\/verify\/out\/nothing\.jsonl/i);
  });
});
