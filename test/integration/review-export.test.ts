/**
 * Human review export: a real audited run (real redis-server, generated models with known
 * disagreements), exported as Label Studio tasks and CSV from a directory and from S3 (s3rver).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportReviewCommand } from '../../cli/commands/export-review.js';
import { runCommand } from '../../cli/commands/run.js';
import { buildProgram } from '../../cli/main.js';
import { imageRef, openManifest, parseReasons } from '../../pipeline/results/review-export.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { colourSpec, writeColourImages } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let images: string;
let out: string;
let redis: TestRedis;
let s3: TestS3;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-review-'));
  images = join(dir, 'images');
  out = join(dir, 'out');
  const models = await writeTestModels(join(dir, 'models'));
  [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['runs'] }), writeColourImages(images)]);
  const config = join(dir, 'config.json');
  // Threshold 0.3: the little model keeps the light greys as a colour (p ≈ 0.32-0.33) where the
  // big model says "other" — audited at fraction 1, those are the disagreements. Black stays
  // at little as "other" with p 0.71; greys 64 and 96 go to big (p 0.92, 0.90).
  await writeFile(
    config,
    JSON.stringify({
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      threshold: 0.3,
      batchSize: 4,
      redisUrl: redis.url,
      prefix: uniquePrefix('review'),
      audit: { fraction: 1 },
    }),
  );
  await runCommand(images, { out, config, progress: false, json: true, runId: 'review-1' });
  // The same run results in S3, to export from there too.
  for (const sub of ['', 'audit']) {
    for (const name of await readdir(join(out, sub), { withFileTypes: true })) {
      if (!name.isFile()) continue;
      await s3.client.send(
        new PutObjectCommand({ Bucket: 'runs', Key: `r1/${sub ? `${sub}/` : ''}${name.name}`, Body: await readFile(join(out, sub, name.name)) }),
      );
    }
  }
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  process.env.CASCADE_S3_ENDPOINT = s3.endpoint;
});

afterAll(async () => {
  delete process.env.CASCADE_S3_ENDPOINT;
  await Promise.allSettled([redis?.stop(), s3?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

const name = (key: string) => key.slice(key.lastIndexOf('/') + 1);

/** Parse our CSV (quoted fields may hold commas and doubled quotes). */
function parseCsv(text: string): string[][] {
  return text
    .trim()
    .split('\n')
    .map((line) =>
      [...line.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)].slice(0, -1).map((m) => (m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!)),
    );
}

describe('cascade export review', () => {
  it('writes Label Studio tasks for errors, disagreements and low confidence', async () => {
    const file = join(dir, 'tasks.json');
    const n = await exportReviewCommand({ run: out, format: 'label-studio', out: file, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' });
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: Record<string, string>; predictions: Array<Record<string, unknown>> }>;
    expect(n).toBe(6);
    expect(tasks.map((t) => [name(t.data.key!), t.data.reason])).toEqual([
      ['corrupt.jpg', 'errors'],
      ['empty.png', 'errors'],
      ['grey-0.png', 'low-confidence'],
      ['grey-128.png', 'disagreements;low-confidence'],
      ['grey-160.png', 'disagreements;low-confidence'],
      ['grey-192.png', 'disagreements;low-confidence'],
    ]);
    const [corrupt, , black, grey128] = tasks as [(typeof tasks)[0], unknown, (typeof tasks)[0], (typeof tasks)[0]];
    expect(corrupt.predictions).toEqual([]);
    expect(corrupt.data.error).toMatch(/^decode: /);
    expect(black.data.image).toBe(join(images, 'grey-0.png'));
    expect(black.predictions).toEqual([
      {
        model_version: 'little',
        score: expect.closeTo(Math.exp(2) / (3 + Math.exp(2)), 5),
        result: [{ from_name: 'choice', to_name: 'image', type: 'choices', value: { choices: ['other'] } }],
      },
    ]);
    // A disagreement carries both answers: the cascade's (little) and the audit's (big).
    expect(grey128.predictions.map((p) => [p.model_version, (p.result as Array<{ value: { choices: string[] } }>)[0]!.value.choices])).toEqual([
      ['little', ['red']],
      ['big (audit)', ['other']],
    ]);
  });

  it('filters by --include and --max-confidence', async () => {
    const only = async (include: string, maxConfidence = 0.5) => {
      const file = join(dir, `sel-${include}-${maxConfidence}.json`);
      await exportReviewCommand({ run: out, format: 'label-studio', out: file, maxConfidence, include });
      return (JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { key: string } }>).map((t) => name(t.data.key));
    };
    expect(await only('errors')).toEqual(['corrupt.jpg', 'empty.png']);
    expect(await only('disagreements')).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(await only('low-confidence', 0.5)).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(await only('low-confidence', 0.9)).toEqual(['grey-0.png', 'grey-128.png', 'grey-160.png', 'grey-192.png', 'grey-96.png']);
    expect(await only('low-confidence', 0)).toEqual([]);
  });

  it('writes CSV with one quoted, parseable line per image', async () => {
    const file = join(dir, 'review.csv');
    await exportReviewCommand({ run: out, format: 'csv', out: file, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' });
    const [header, ...lines] = parseCsv(await readFile(file, 'utf8'));
    expect(header).toEqual(['key', 'reason', 'label', 'labelName', 'confidence', 'stage', 'error', 'auditLabelName']);
    expect(lines).toHaveLength(6);
    const byName = new Map(lines.map((l) => [name(l[0]!), l]));
    expect(byName.get('grey-160.png')!.slice(1)).toEqual(['disagreements;low-confidence', '0', 'red', expect.stringMatching(/^0\.32/), 'little', '', 'other']);
    expect(byName.get('empty.png')!.slice(1, 7)).toEqual(['errors', '', '', '', '', expect.stringMatching(/^decode: /)]);
  });

  it('reads the run from S3 and keeps s3:// keys', async () => {
    const file = join(dir, 's3.json');
    await exportReviewCommand({ run: 's3://runs/r1/', format: 'label-studio', out: file, maxConfidence: 0.75, include: 'disagreements' });
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { image: string }; predictions: unknown[] }>;
    expect(tasks.map((t) => name(t.data.image))).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(tasks.every((t) => t.predictions.length === 2)).toBe(true);
  });

  it('is registered as `cascade export review` and maps local files under --local-files-root', async () => {
    const file = join(dir, 'cli.json');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await buildProgram().parseAsync([
        'node',
        'cascade',
        'export',
        'review',
        '--run',
        out,
        '--out',
        file,
        '--include',
        'low-confidence',
        '--max-confidence',
        '0.75',
        '--local-files-root',
        dir,
      ]);
    } finally {
      stderr.mockRestore();
    }
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { image: string } }>;
    expect(tasks[0]!.data.image).toBe(`/data/local-files/?d=${relative(dir, join(images, 'grey-0.png'))}`);
  });

  it('names a bad reason and a missing run clearly', async () => {
    expect(() => parseReasons('errors,typos')).toThrow('--include: unknown reason "typos" (use errors, disagreements, low-confidence)');
    await expect(exportReviewCommand({ run: join(dir, 'nowhere'), format: 'csv', maxConfidence: 0.5, include: 'errors' })).rejects.toThrow(
      /no manifest\.jsonl in .*nowhere.*is the run finished/,
    );
  });

  it('a missing run on S3 (no bucket) is the same clear error, disagreements asked for or not', async () => {
    for (const include of ['errors', 'disagreements']) {
      await expect(exportReviewCommand({ run: 's3://no-such-bucket/r1/', format: 'csv', maxConfidence: 0.5, include })).rejects.toThrow(
        /no manifest\.jsonl in s3:\/\/no-such-bucket\/r1\/.*is the run finished/,
      );
    }
  });

  it('streams the manifest, naming the line of a row that is not one (blank lines counted)', async () => {
    const store = new LocalStore(join(dir, 'bad-manifest'));
    const good = JSON.stringify({ key: '/x/a.png', label: 0, labelName: 'red', confidence: 0.9, stage: 'little', top5: [], error: null });
    await store.put('manifest.jsonl', `${good}\n\n${good.replace('0.9', '"high"')}\n`);
    const rows: string[] = [];
    const read = async () => {
      for await (const row of await openManifest(store)) rows.push(row.key);
    };
    await expect(read()).rejects.toThrow(/^manifest\.jsonl line 3 is not a manifest row: confidence: /);
    expect(rows).toEqual(['/x/a.png']);
  });

  it('image references: s3 kept, local mapped only under the root, special characters encoded', () => {
    expect(imageRef('s3://b/k.jpg', '/data')).toBe('s3://b/k.jpg');
    expect(imageRef('/data/a b/c#1.jpg', '/data/')).toBe('/data/local-files/?d=a%20b/c%231.jpg');
    expect(imageRef('/elsewhere/x.jpg', '/data')).toBe('/elsewhere/x.jpg');
    expect(imageRef('/data/x.jpg')).toBe('/data/x.jpg');
  });
});
