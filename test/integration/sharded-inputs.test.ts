/**
 * Sharded inputs give row for row the labels of the same images as loose files (issue 26, item 3):
 * the colour fixture (saturated colours the little model keeps, greys it forwards to the big one,
 * two broken files) run through a one-process `cascade run` as a folder, as two WebDataset tar
 * shards (local and on s3rver), as two Parquet files with an image column (local and on
 * s3rver), and as a Parquet file with a URL column. The tensor cache is off, so the big stage
 * re-reads each forwarded sample from its shard (a ranged read, a Parquet cell); `cascade verify`
 * agrees with each manifest. Under a window of one batch (or a byte budget) the run lists a
 * batch at a time from its shard cursor and gives the same manifest. Real redis-server, s3rver
 * and generated models.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, parse } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { colourCascade, writeColourImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { quietly } from '../helpers/quietly.js';
import { uniquePrefix } from '../helpers/redis.js';
import { parquetBytes, sampleMembers, tarShard } from '../helpers/shard-fixture.js';

withS3rverCredentials();
const work = withTempDir('shards');
const redis = withRedis();
const s3 = withS3({ buckets: ['shards'] });
const models = withModels(work);

let loose: string;
let names: string[];

const put = (Key: string, Body: Buffer) => s3.client.send(new PutObjectCommand({ Bucket: 'shards', Key, Body }));

beforeAll(async () => {
  loose = join(work.path, 'loose');
  await writeColourImages(loose);
  names = (await readdir(loose)).sort(compareKeys);
  const images = await Promise.all(names.map((n) => readFile(join(loose, n))));
  const half = Math.ceil(names.length / 2);
  const parts = [names.slice(0, half), names.slice(half)].map((ns, i) => ({ ns, bytes: images.slice(i * half, i * half + ns.length) }));
  await mkdir(join(work.path, 'wds'));
  await mkdir(join(work.path, 'pq'));
  for (const [i, part] of parts.entries()) {
    const tar = await tarShard(part.ns.flatMap((n, j) => sampleMembers(parse(n).name, parse(n).ext.slice(1), part.bytes[j]!, j)));
    const shard = `${String(i).padStart(6, '0')}.tar`;
    await writeFile(join(work.path, 'wds', shard), tar);
    await put(`wds/${shard}`, tar);
    // Small row groups: rows are found across row groups, as in img2dataset's files.
    const pq = parquetBytes(
      [
        { name: 'key', data: part.ns.map((n) => parse(n).name), type: 'STRING' },
        { name: 'jpg', data: part.bytes.map((b) => new Uint8Array(b)), type: 'BYTE_ARRAY' },
      ],
      3,
    );
    await writeFile(join(work.path, 'pq', `part-${i}.parquet`), pq);
    await put(`pq/part-${i}.parquet`, pq);
  }
  // A URL column: refs relative to the file's folder, as in a key list.
  await writeFile(join(work.path, 'urls.parquet'), parquetBytes([{ name: 'url', data: names.map((n) => `loose/${n}`), type: 'STRING' }]));
});

/** Runs the colour cascade over `source`; returns the manifest rows. */
async function run(name: string, source: string, extra: Record<string, unknown> = {}): Promise<ManifestRow[]> {
  const config = join(work.path, `${name}.json`);
  await writeFile(
    config,
    JSON.stringify(
      colourCascade(models, {
        // No tensor handed from little to big: the big stage reads forwarded samples back from their shards.
        tensorCacheMb: 0,
        redisUrl: redis.url,
        prefix: uniquePrefix(name),
        s3: { endpoint: s3.endpoint, forcePathStyle: true },
        ...extra,
      }),
    ),
  );
  const out = join(work.path, `out-${name}`);
  const summary = await quietly(() => runCommand(source, { out, config, progress: false, json: true }));
  expect(summary.images).toBe(names.length);
  const report = await quietly(() => verifyCommand({ manifest: out, source, config, json: true }));
  expect(report).toMatchObject({ ok: true, manifestRows: names.length, counts: { missing: 0, duplicate: 0, unknown: 0, invalid: 0 } });
  return (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
}

/** What must be equal between two runs of the same image: everything but the key and the error's wording. */
const answer = (r: ManifestRow) => ({
  label: r.label,
  labelName: r.labelName,
  confidence: r.confidence,
  stage: r.stage,
  top5: r.top5,
  error: r.error?.kind ?? null,
});

describe('sharded inputs', () => {
  let expected: ManifestRow[];

  beforeAll(async () => {
    expected = await run('loose', loose);
    // The fixture has both routes and both kinds of broken file.
    expect(new Set(expected.map((r) => r.stage))).toEqual(new Set(['little', 'big', null]));
    expect(expected.filter((r) => r.error).map((r) => r.error!.kind)).toEqual(['decode', 'decode']);
  });

  const cases: Array<[string, () => string, (name: string, i: number) => string]> = [
    ['WebDataset tar shards', () => join(work.path, 'wds', '{000000..000001}.tar'), (n, i) => `${join(work.path, 'wds', `00000${i}.tar`)}#${parse(n).name}`],
    ['WebDataset tar shards on S3', () => 's3://shards/wds/{000000..000001}.tar', (n, i) => `s3://shards/wds/00000${i}.tar#${parse(n).name}`],
    [
      'Parquet files with an image column',
      () => join(work.path, 'pq', '*.parquet'),
      (n, i) => `${join(work.path, 'pq', `part-${i}.parquet`)}#${parse(n).name}`,
    ],
    ['Parquet files on S3', () => 's3://shards/pq/part-*.parquet', (n, i) => `s3://shards/pq/part-${i}.parquet#${parse(n).name}`],
    ['a Parquet URL column', () => join(work.path, 'urls.parquet'), (n) => join(loose, n)],
  ];
  // Listed a window at a time: one batch in flight (or a byte budget below one batch's payload),
  // the merge role listing on from the shard cursor in Redis: the same manifest as listed whole.
  const windows: Record<string, Record<string, unknown>> = {
    'WebDataset tar shards': { window: { batches: 1 } },
    'WebDataset tar shards on S3': { window: { batches: 1 } },
    'Parquet files on S3': { window: { batches: 1 } },
    'a Parquet URL column': { window: { batches: 100, bytes: 1 } },
  };
  for (const [what, source, keyOf] of cases) {
    for (const extra of [{}, ...(windows[what] ? [windows[what]] : [])]) {
      const how = 'window' in extra ? ` under window ${JSON.stringify(extra.window)}` : '';
      it(`${what}${how}: the loose files' labels, row for row`, async () => {
        const rows = await run((what + how).replace(/\W+/g, '-'), source(), extra);
        const half = Math.ceil(names.length / 2);
        expect(rows.map((r) => r.key)).toEqual(names.map((n, j) => keyOf(n, j < half ? 0 : 1)));
        expect(rows.map(answer)).toEqual(expected.map(answer));
      });
    }
  }
});
