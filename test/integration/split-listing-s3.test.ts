/**
 * Split listing of a remote prefix (pipeline/storage/split-listing.ts) on s3rver: key ranges
 * bounded by the prefix's folders, listed concurrently, yield exactly the flat listing, key for
 * key (keys directly under the prefix that sort between folders, spaces, unicode); a listing
 * resumed from any stored cursor, split or not, mid-range or at a range's end, goes on with
 * exactly the keys after it; and a windowed run of such a prefix, topped up by the merge role
 * from the stored cursor, writes the same manifest as an unwindowed, sequential one.
 */
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ListingSplit, CascadeConfig } from '../../config/schema.js';
import { loadConfig } from '../../config/load-config.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { listSource, listSourceFrom, SourceNotFoundError } from '../../producers/list-source.js';
import { type ListingCursor, parseCursor } from '../../producers/listing-cursor.js';
import { planRun } from '../../producers/plan-run.js';
import { resumableSource } from '../../producers/inputs/input-formats.js';
import { submitRun } from '../../producers/submit-run.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { type TestS3, startS3 } from '../helpers/s3.js';

const EXT = ['.jpg', '.png'];
const BUCKET = 'split-test';
const SEQUENTIAL: ListingSplit = { concurrency: 1, splits: 1, pagesAhead: 1 };
// Small pages and a one-page read-ahead: ranges span several pages and wait on their consumer.
const SPLIT: ListingSplit = { concurrency: 4, splits: 1000, pagesAhead: 1 };
const PAGE = 3;

/**
 * Keys under `tree/`: folders two and three deep, keys directly under the prefix sorting before,
 * between and after folders (`ab.jpg` after `a/…`, `0.jpg` and ` space.jpg` before everything),
 * spaces, unicode (é, 日本, an astral emoji), a folder marker, and a non-image. Two cases run
 * on the local store instead (test/unit/split-listing.test.ts), because s3rver 3.7 lists them
 * unlike S3 even flat: it walks its folders by name, so `a.jpg` or `a-b.jpg` (a character below
 * '/' after a folder's name) come after `a/x.jpg` and its next page skips them; and its pages
 * compare keys in UTF-16 order, so a page ending at `～.jpg` drops a following astral `😀.jpg`.
 */
const TREE = [
  ' space.jpg',
  '0.jpg',
  'a/',
  'a/w x.jpg',
  'a/x.jpg',
  ...Array.from({ length: 7 }, (_, i) => `a/y/${i}.jpg`),
  'a/z.jpg',
  'a0.jpg',
  'ab.jpg',
  ...Array.from({ length: 6 }, (_, i) => `b/${i}.jpg`),
  'b0.jpg',
  'c d/e f.jpg',
  'c.jpg',
  'deep/1/2/3.jpg',
  'deep/1/2/4.jpg',
  'deep/1/5.jpg',
  'deep/9.jpg',
  ...Array.from({ length: 11 }, (_, i) => `n/${String(i).padStart(4, '0')}.jpg`),
  'readme.txt',
  'z.jpg',
  'é.jpg',
  '日本/1.jpg',
  '日本/2.jpg',
  '😀.jpg',
].map((k) => `tree/${k}`);
const OUTSIDE = ['tre.jpg', 'tree2/x.jpg', 'treez.jpg'];
const EXPECTED = TREE.filter((k) => k.endsWith('.jpg'))
  .sort(compareKeys)
  .map((k) => `s3://${BUCKET}/${k}`);

let s3: TestS3;

async function listed(
  split: ListingSplit,
  cursor: ListingCursor | null = null,
  source = `s3://${BUCKET}/tree`,
): Promise<Array<{ ref: string; cursor: ListingCursor }>> {
  const out: Array<{ ref: string; cursor: ListingCursor }> = [];
  for await (const item of listSourceFrom(source, { extensions: EXT, stores: s3.stores, pageSize: PAGE, split }, cursor)) out.push(item);
  return out;
}

/** A cursor as it comes back from Redis. */
const stored = (cursor: ListingCursor) => parseCursor(JSON.stringify(cursor));

beforeAll(async () => {
  s3 = await startS3({ buckets: [BUCKET] });
  await Promise.all([...TREE, ...OUTSIDE].map((Key) => s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: Buffer.from(Key) }))));
});

afterAll(async () => {
  await s3?.stop();
});

describe('split listing of an S3 prefix', () => {
  it('lists the ranges concurrently and yields exactly the flat listing, key for key and cursor for cursor', async () => {
    const flat = await listed(SEQUENTIAL);
    expect(flat.map((x) => x.ref)).toEqual(EXPECTED);
    const send = vi.spyOn(s3.client, 'send');
    let split: Awaited<ReturnType<typeof listed>>;
    try {
      split = await listed(SPLIT);
      const lists = send.mock.calls.map(([cmd]) => cmd as unknown).filter((cmd): cmd is ListObjectsV2Command => cmd instanceof ListObjectsV2Command);
      // The ranges start at the folders found by delimiter listings, two levels deep here.
      const starts = lists.filter((cmd) => cmd.input.Delimiter === undefined && cmd.input.ContinuationToken === undefined).map((cmd) => cmd.input.StartAfter);
      expect(starts).toEqual(expect.arrayContaining([undefined, 'tree/a/', 'tree/a/y/', 'tree/deep/1/', 'tree/n/', 'tree/日本/']));
    } finally {
      send.mockRestore();
    }
    expect(split.map((x) => x.ref)).toEqual(EXPECTED);
    expect(split.map((x) => (x.cursor as { after: string }).after)).toEqual(flat.map((x) => (x.cursor as { after: string }).after));
    expect(split[0]!.cursor).toMatchObject({ kind: 'prefix', splits: expect.arrayContaining(['tree/a/', 'tree/a/y/', 'tree/c d/', 'tree/deep/1/2/']) });
    expect(flat[0]!.cursor).not.toHaveProperty('splits');
  });

  it('resumes from every stored cursor, split or flat, mid-range and at the end of a range, with exactly the keys after it', async () => {
    const split = await listed(SPLIT);
    const flat = await listed(SEQUENTIAL);
    const splits = (split[0]!.cursor as { splits: string[] }).splits;
    // Ends of ranges among the positions below: the last key before a folder, and a folder's last key.
    const ends = split
      .map((x, i) => ({ i, after: (x.cursor as { after: string }).after }))
      .filter(({ after }, i, all) => {
        const next = all[i + 1]?.after;
        return next !== undefined && splits.some((s) => compareKeys(after, s) < 0 && compareKeys(s, next) < 0);
      });
    expect(ends.length).toBeGreaterThan(3);
    for (let i = 0; i < split.length; i++) {
      const rest = EXPECTED.slice(i + 1);
      expect(
        (await listed(SPLIT, stored(split[i]!.cursor))).map((x) => x.ref),
        `split cursor ${i}, split listing`,
      ).toEqual(rest);
      expect(
        (await listed(SPLIT, stored(flat[i]!.cursor))).map((x) => x.ref),
        `flat cursor ${i}, split listing`,
      ).toEqual(rest);
      expect(
        (await listed(SEQUENTIAL, stored(split[i]!.cursor))).map((x) => x.ref),
        `split cursor ${i}, flat listing`,
      ).toEqual(rest);
    }
  });

  it('resumes with a stored split list that no longer matches the prefix (folders gone or added): the ranges still cover every key once', async () => {
    const at = (after: string, splits: string[]) => stored({ kind: 'prefix', after, splits });
    const tail = (after: string) => EXPECTED.filter((ref) => compareKeys(ref.slice(`s3://${BUCKET}/`.length), after) > 0);
    for (const splits of [
      ['tree/gone/', 'tree/zz/'],
      ['tree/b/', 'tree/b/0.jpg', 'tree/n/0005.jpg'],
      ['tree/a/', 'tree/a/'],
    ]) {
      for (const after of ['tree/0.jpg', 'tree/a/y/3.jpg', 'tree/b/', 'tree/n/0009.jpg']) {
        expect(
          (await listed(SPLIT, at(after, splits))).map((x) => x.ref),
          `${after} ${splits.join(',')}`,
        ).toEqual(tail(after));
      }
    }
  });

  it('says what is wrong with a missing bucket or an empty prefix, as the flat listing does', async () => {
    await expect(listed(SPLIT, null, 's3://no-such-bucket/tree')).rejects.toThrow(/bucket "no-such-bucket" does not exist/);
    const err = await listed(SPLIT, null, `s3://${BUCKET}/tre`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotFoundError);
    expect((err as Error).message).toMatch(/no objects under s3:\/\/split-test\/tre\//);
  });
});

describe('a run of a split-listed prefix', () => {
  withS3rverCredentials();
  const work = withTempDir('split-run');
  const redis = withRedis();
  const models = withModels(work);

  it('windowed and topped up by the merge role from the stored cursor, writes the same manifest as an unwindowed sequential run', async () => {
    // Real images in a nested layout with keys between the folders.
    const keys = ['ima.png', 'img/0.png', 'img/1/x.png', 'img/1/y.png', 'img/2.png', 'img0.png', 'j k/é.png', 'j k/z/1.png', 'z.png', '日本/1.png'];
    await Promise.all(
      keys.map(async (k, i) => {
        const background = i % 2 ? { r: 255, g: 0, b: 0 } : { r: 100, g: 100, b: 100 };
        const Body = await sharp({ create: { width: 8, height: 8, channels: 3, background } })
          .png()
          .toBuffer();
        await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `run/${k}`, Body }));
      }),
    );
    const source = `s3://${BUCKET}/run/`;
    const config: CascadeConfig = await loadConfig({
      overrides: {
        little: colourSpec(models.colourLittle, models.labels),
        big: colourSpec(models.colourBig, models.labels),
        threshold: 0.9,
        batchSize: 2,
        redisUrl: redis.url,
        prefix: uniquePrefix('split-run'),
        s3: { endpoint: s3.endpoint, forcePathStyle: true },
      },
      env: {},
    });
    const rt = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
    try {
      const manifests: string[] = [];
      for (const [name, split, window] of [
        ['whole', SEQUENTIAL, Number.POSITIVE_INFINITY],
        ['windowed', { concurrency: 4, splits: 1000, pagesAhead: 1 }, 1],
      ] as const) {
        const out = join(work.path, `out-${name}`);
        const spec = await planRun(config, source, out, rt.models, `split-${name}`);
        const submitted = await submitRun({
          spec,
          refs: resumableSource({ source, extensions: config.extensions, split }, rt.stores),
          window,
          tracker: rt.tracker,
          queues: rt.queues,
          output: rt.openOutput(out),
        });
        expect(submitted.listing).toBe(name === 'whole' ? 'done' : 'continues');
        const summary = await waitForRun(rt.tracker, spec.runId, () => {});
        // The windowed run's passes resumed from a cursor carrying the split keys found by the first.
        const cursor = JSON.parse((await rt.tracker.listingState(spec.runId))!.cursor!) as { splits?: string[] };
        expect(cursor.splits).toEqual(name === 'whole' ? undefined : ['run/img/', 'run/img/1/', 'run/j k/', 'run/j k/z/', 'run/日本/']);
        expect(summary.images).toBe(keys.length);
        const report = await verifyManifest(listSource(source, { extensions: config.extensions, stores: rt.stores }), readManifestLines(out, rt.stores));
        expect([report.ok, report.manifestRows, report.counts.duplicate, report.counts.missing]).toEqual([true, keys.length, 0, 0]);
        manifests.push(await readFile(join(out, 'manifest.jsonl'), 'utf8'));
      }
      expect(manifests[1]).toBe(manifests[0]);
      expect(
        manifests[0]!
          .split('\n')
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as { key: string }).key),
      ).toEqual(keys.sort(compareKeys).map((k) => `s3://${BUCKET}/run/${k}`));
    } finally {
      await rt.close();
    }
  }, 120_000);
});
