/**
 * End-to-end: real redis-server, real s3rver, real onnxruntime sessions on generated models
 * whose outputs are known, so routing counts are exact.
 */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';

const run = promisify(execFile);

// Little logits are [8r, 8g, 8b, 2]: saturated colours are ≥ 0.996 sure, greys and black ≤ 0.72.
const IMAGES: Array<{ name: string; rgb: [number, number, number]; stage: 'little' | 'big'; label: string }> = [
  ...[0, 1, 2, 3, 4].map((i) => ({ name: `red-${i}.png`, rgb: [255, 0, 0] as [number, number, number], stage: 'little' as const, label: 'red' })),
  ...[0, 1, 2, 3].map((i) => ({ name: `sub/green-${i}.png`, rgb: [0, 255, 0] as [number, number, number], stage: 'little' as const, label: 'green' })),
  ...[0, 1, 2].map((i) => ({ name: `blue ${i} ünï.png`, rgb: [0, 0, 255] as [number, number, number], stage: 'little' as const, label: 'blue' })),
  ...[0, 64, 96, 128, 160, 192].map((v) => ({ name: `grey-${v}.png`, rgb: [v, v, v] as [number, number, number], stage: 'big' as const, label: 'other' })),
];
const BAD = ['corrupt.jpg', 'empty.png'];
const TOTAL = IMAGES.length + BAD.length;

let images: string;

async function writeImages(root: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const img of IMAGES) {
    const [r, g, b] = img.rgb;
    files.set(
      img.name,
      await sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer(),
    );
  }
  files.set('corrupt.jpg', Buffer.from('<html><body>not an image</body></html>'));
  files.set('empty.png', Buffer.alloc(0));
  for (const [name, bytes] of files) {
    await mkdir(join(root, name, '..'), { recursive: true });
    await writeFile(join(root, name), bytes);
  }
  return files;
}

function modelSpec(path: string) {
  return colourSpec(path, models.labels);
}

async function writeConfig(extra: Record<string, unknown> = {}, little = models.colourLittle): Promise<string> {
  const file = join(work.path, `config-${Math.random().toString(36).slice(2)}.json`);
  const config = {
    little: modelSpec(little),
    big: modelSpec(models.colourBig),
    threshold: 0.9,
    batchSize: 4,
    redisUrl: redis.url,
    prefix: uniquePrefix('cascade-run'),
    s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' },
    ...extra,
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

function checkRows(rows: ManifestRow[], keyOf: (name: string) => string) {
  expect(rows).toHaveLength(TOTAL);
  const byKey = new Map(rows.map((r) => [r.key, r]));
  expect(byKey.size).toBe(TOTAL);
  for (const img of IMAGES) {
    const row = byKey.get(keyOf(img.name));
    expect(row, img.name).toBeDefined();
    expect(row!.stage, img.name).toBe(img.stage);
    expect(row!.labelName, img.name).toBe(img.label);
    expect(row!.error).toBeNull();
    expect(row!.top5).toHaveLength(4);
  }
  for (const bad of BAD) {
    const row = byKey.get(keyOf(bad))!;
    expect(row.error?.kind, bad).toBe('decode');
    expect(row.label).toBeNull();
  }
}

function checkSummary(s: RunSummary) {
  expect(s.images).toBe(TOTAL);
  expect(s.errors).toBe(2);
  expect(s.errorsByKind).toEqual({ decode: 2 });
  expect(s.stages[0]).toMatchObject({ name: 'little', images: TOTAL, accepted: 12, forwarded: 6, errors: 2 });
  expect(s.stages[1]).toMatchObject({ name: 'big', images: 6, accepted: 6, forwarded: 0, errors: 0 });
  expect(s.fractionToBig).toBeCloseTo(6 / 18, 10);
  const [little, big] = s.stages.map((st) => st.gmacsPerImage) as [number, number];
  expect(s.macs.cascadeG).toBeCloseTo(18 * little + 6 * big, 12);
  expect(s.macs.bigOnlyG).toBeCloseTo(18 * big, 12);
}

withS3rverCredentials();
const work = withTempDir('e2e');
const redis = withRedis();
const s3 = withS3({ buckets: ['images-in', 'results'] });
const models = withModels(work);

beforeAll(async () => {
  images = join(work.path, 'images');
  const files = await writeImages(images);
  for (const [name, body] of files) await s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: `imgs/${name}`, Body: body }));
});

describe('cascade run', () => {
  it('labels a local folder into a directory: exact routing, error rows, input order', async () => {
    const out = join(work.path, 'out-local');
    const summary = await runCommand(images, { out, config: await writeConfig(), progress: false, json: true });
    checkSummary(summary);
    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    checkRows(rows, (name) => join(images, name));
    // Local listings are sorted, and the manifest keeps listing order.
    expect(rows.map((r) => r.key)).toEqual([...rows.map((r) => r.key)].sort());
    expect(RunSummary.parse(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')))).toEqual(summary);
  });

  it('labels an S3 prefix into an S3 bucket', async () => {
    const summary = await runCommand('s3://images-in/imgs/', { out: 's3://results/run-1/', config: await writeConfig(), progress: false, json: true });
    checkSummary(summary);
    const get = async (key: string) => (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: key }))).Body!.transformToString();
    const rows = (await get('run-1/manifest.jsonl'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    checkRows(rows, (name) => `s3://images-in/imgs/${name}`);
    expect(JSON.parse(await get('run-1/summary.json')).images).toBe(TOTAL);
    // Every object the run wrote carries its Content-Type, not application/octet-stream.
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'results', Prefix: 'run-1/' }));
    const types: Record<string, string | undefined> = {};
    for (const { Key } of listed.Contents ?? []) {
      const ext = Key!.slice(Key!.lastIndexOf('.'));
      types[ext] = (await s3.client.send(new HeadObjectCommand({ Bucket: 'results', Key }))).ContentType;
      expect(types[ext], Key).not.toBe('application/octet-stream');
    }
    expect(types).toEqual({
      '.jsonl': 'application/x-ndjson',
      '.json': 'application/json',
      '.svg': 'image/svg+xml',
      '.png': 'image/png',
      '.parquet': 'application/vnd.apache.parquet',
    });
  });

  it('a window of one batch (the rest listed by the listing job as batches finish) writes the same manifest, byte for byte; from S3 too', async () => {
    const whole = join(work.path, 'out-whole');
    const windowed = join(work.path, 'out-window-1');
    await runCommand(images, { out: whole, config: await writeConfig(), progress: false, json: true });
    const summary = await runCommand(images, { out: windowed, config: await writeConfig({ window: { batches: 1 } }), progress: false, json: true });
    checkSummary(summary);
    expect(await readFile(join(windowed, 'manifest.jsonl'))).toEqual(await readFile(join(whole, 'manifest.jsonl')));
    const fromS3 = await runCommand('s3://images-in/imgs/', {
      out: join(work.path, 'out-window-s3'),
      config: await writeConfig({ window: { batches: 1 } }),
      progress: false,
      json: true,
    });
    checkSummary(fromS3);
  });

  it('runs a float16-input little model to the same answers', async () => {
    const out = join(work.path, 'out-fp16');
    const summary = await runCommand(images, { out, config: await writeConfig({}, models.colourLittleFp16), progress: false, json: true });
    checkSummary(summary);
  });

  it('resubmitting a finished run adds no job', async () => {
    const config = await writeConfig();
    const prefix = JSON.parse(await readFile(config, 'utf8')).prefix as string;
    const out = join(work.path, 'out-resubmit');
    const summary = await runCommand(images, { out, config, progress: false, json: true, runId: 'resubmit-1' });
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    try {
      const spec = (await tracker.spec('resubmit-1'))!;
      async function* refs() {
        yield 'never-read.png';
      }
      const again = await submitRun({ spec, refs: refs(), tracker, queues, output: new LocalStore(spec.out) });
      expect(again).toMatchObject({ alreadySubmitted: true, images: TOTAL, batches: Math.ceil(TOTAL / 4) });
      const counts = await queues.stage('little').getJobCounts('waiting', 'active', 'delayed', 'completed');
      expect(counts).toEqual({ waiting: 0, active: 0, delayed: 0, completed: 0 });
      expect((await tracker.progress('resubmit-1'))!.final).toBe(summary.images);
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });

  it('the CLI starts its own redis-server when REDIS_URL is unset', async () => {
    const specFile = async (name: string, path: string) => {
      const file = join(work.path, `${name}.json`);
      await writeFile(file, JSON.stringify(modelSpec(path)));
      return file;
    };
    const out = join(work.path, 'out-cli');
    const env = { ...process.env, REDIS_URL: '' };
    const { stdout, stderr } = await run(
      process.execPath,
      [
        'bin/cascade.js',
        'run',
        images,
        '--out',
        out,
        '--little',
        await specFile('little', models.colourLittle),
        '--big',
        await specFile('big', models.colourBig),
        '--threshold',
        '0.9',
        '--batch-size',
        '4',
        '--json',
      ],
      { env, timeout: 60_000 },
    );
    expect(stderr).toMatch(/started a private redis-server/);
    checkSummary(RunSummary.parse(JSON.parse(stdout)));
  });

  it('a wrong config value is a clear error naming the field', async () => {
    await expect(runCommand(images, { out: join(work.path, 'x'), config: await writeConfig({ threshold: 3 }), progress: false })).rejects.toThrow(
      /threshold: Too big/,
    );
  });

  it('an unreadable model is a clear error at start-up', async () => {
    const broken = join(work.path, 'broken.onnx');
    await writeFile(broken, 'not a model');
    await expect(runCommand(images, { out: join(work.path, 'y'), config: await writeConfig({ little: modelSpec(broken) }), progress: false })).rejects.toThrow(
      /broken\.onnx/,
    );
  });
});
