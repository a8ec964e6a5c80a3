/**
 * A real run (real redis-server, generated models, colour images with two broken files) whose
 * config asks for the manifest as Parquet alone (`output.jsonl: never`), written to S3 (s3rver)
 * by the merge worker: no manifest.jsonl, shards of whole batches; `cascade verify` reads the
 * shards in S3 and passes; DuckDB reads the shards and gives the rows the manifest reader gives;
 * `export final` streams final.parquet to S3 and DuckDB reads it back.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { duckRows } from '../helpers/duckdb.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportFinalCommand } from '../../cli/commands/export-final.js';
import { runCommand } from '../../cli/commands/run.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import type { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { manifestShardKey } from '../../pipeline/results/output-layout.js';
import { colourCascade, writeColourImages } from '../helpers/colour-fixture.js';
import { quietly } from '../helpers/quietly.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { S3RVER_ENV, startS3, type TestS3 } from '../helpers/s3.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let images: string;
let count: number;
let redis: TestRedis;
let s3: TestS3;
let summary: RunSummary;
const saved = { ...process.env };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-parquet-run-'));
  images = join(dir, 'images');
  const models = await writeTestModels(join(dir, 'models'));
  [redis, s3, count] = await Promise.all([startRedis(), startS3({ buckets: ['runs'] }), writeColourImages(images)]);
  Object.assign(process.env, S3RVER_ENV, { CASCADE_S3_ENDPOINT: s3.endpoint });
  const config = join(dir, 'config.json');
  await writeFile(
    config,
    JSON.stringify(
      colourCascade(models, {
        threshold: 0.3,
        redisUrl: redis.url,
        prefix: uniquePrefix('parquet'),
        output: { jsonl: 'never', shardRows: 8, shardConcurrency: 2 },
      }),
    ),
  );
  summary = await quietly(() => runCommand(images, { out: 's3://runs/r1/', config, progress: false, json: true, runId: 'parquet-1' }));
}, 120_000);

afterAll(async () => {
  process.env = saved;
  await Promise.all([redis?.stop(), s3?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

/** An object of the bucket, downloaded to a local file (DuckDB reads files). */
async function download(key: string, file: string): Promise<string> {
  const body = await (await s3.client.send(new GetObjectCommand({ Bucket: 'runs', Key: key }))).Body!.transformToByteArray();
  await writeFile(file, body);
  return file;
}

describe('a run with the manifest as Parquet alone, in S3', () => {
  it('writes shards of whole batches and no manifest.jsonl; the summary says so', async () => {
    const shards = Math.ceil(count / 8);
    expect(summary).toMatchObject({ images: count, errors: 2, manifest: { jsonl: false, parquetShards: shards } });
    await expect(s3.client.send(new HeadObjectCommand({ Bucket: 'runs', Key: 'r1/manifest.jsonl' }))).rejects.toThrow();
    for (let i = 0; i < shards; i++) await s3.client.send(new HeadObjectCommand({ Bucket: 'runs', Key: `r1/${manifestShardKey(i)}` }));
  });

  it('passes `cascade verify` read from the shards, and DuckDB reads the rows the manifest reader gives', async () => {
    const report = await quietly(() => verifyCommand({ manifest: 's3://runs/r1/', source: images }));
    expect(report).toMatchObject({ ok: true, sourceKeys: count, manifestRows: count, errorRows: 2 });
    expect(report.provenance?.ok).toBe(true);

    const rows: ManifestRow[] = [];
    for await (const row of await openManifest(s3.stores.open('s3://runs/r1/'))) rows.push(row);
    const local = join(dir, 'shards');
    await mkdir(local);
    for (let i = 0; i < summary.manifest!.parquetShards; i++) await download(`r1/${manifestShardKey(i)}`, join(local, `part-${i}.parquet`));
    const fromDuck = await duckRows(`SELECT * FROM read_parquet('${join(local, '*.parquet')}') ORDER BY key`);
    expect(fromDuck).toEqual([...rows].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key))));
    expect(rows.filter((r) => r.error !== null).map((r) => r.error!.kind)).toEqual(['decode', 'decode']);
  });

  it('streams export final to s3:// as Parquet, read back by DuckDB', async () => {
    const counts = await quietly(() => exportFinalCommand({ run: 's3://runs/r1/', out: 's3://runs/exports/final.parquet' }));
    expect(counts).toEqual({ rows: count, human: 0, cascade: count - 2, errors: 2 });
    const file = await download('exports/final.parquet', join(dir, 'final.parquet'));
    const sources = await duckRows(`SELECT label_source, count(*)::INTEGER AS n FROM read_parquet('${file}') GROUP BY label_source ORDER BY label_source`);
    const stages = summary.stages.map((s) => ({ label_source: s.name, n: s.accepted }));
    expect(sources).toEqual([...stages.sort((a, b) => a.label_source.localeCompare(b.label_source)), { label_source: null, n: 2 }]);
  });
});
