/**
 * `cascade calibrate`, `calibrate --stages`, `search-saver` and `frontier` on sharded datasets
 * (issue 26 follow-up): the calibration fixture's twelve images (calibration-fixture.ts) as two
 * WebDataset tar shards labelled by `.cls` members (one by a `.json` label instead; local and on s3rver), as two
 * Parquet files with a label column, and as tar shards with a labels CSV keyed `<shard>#<key>`,
 * give the same calibration as the loose files with their CSV: each sample is read where a run's
 * stage reads it. Samples without a valid label are counted and left out; none at all is one
 * line. The probability cache is keyed by `<shard>#<sampleKey>`. Real files and generated models.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join, parse } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { CalibrationFile } from '../../config/calibration.js';
import { ConfigError } from '../../config/load-config.js';
import { calibrateCommand, type CalibrateOptions } from '../../cli/commands/calibrate.js';
import { calibrateChainCommand } from '../../cli/commands/calibrate-chain.js';
import { frontierCommand } from '../../cli/commands/frontier.js';
import { searchSaverCommand } from '../../cli/commands/search-saver.js';
import { CALIBRATION_IMAGES, CLASS, colourPng, type CalibrationFixture, seedColourTimings, writeCalibrationFixture } from '../helpers/calibration-fixture.js';
import { withModels, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { quietly } from '../helpers/quietly.js';
import { type Member, parquetBytes, sampleMembers, tarShard } from '../helpers/shard-fixture.js';

withS3rverCredentials();
const work = withTempDir('calibrate-shards');
const models = withModels(work);
const s3 = withS3({ buckets: ['shards'] });
let fx: CalibrationFixture;
let wds: string;
let clean: string;
let pq: string;

/** A fixture image's sample key: its name without the extension (`sub/blue-1`). */
const keyOf = (name: string) => name.slice(0, -parse(name).ext.length);
/** The images of shard i (two shards of six). */
const shardImages = (i: number) => CALIBRATION_IMAGES.slice(6 * i, 6 * i + 6);

/** Tar shards `<dir>/00000i.tar` of the fixture's images, each sample's members from `members`, `extra` appended to the last. */
async function writeTarShards(dir: string, members: (img: (typeof CALIBRATION_IMAGES)[number], png: Buffer) => Member[], extra: Member[] = []) {
  await mkdir(dir, { recursive: true });
  for (const i of [0, 1]) {
    const all: Member[] = [];
    for (const img of shardImages(i)) all.push(...members(img, await colourPng(img.rgb)));
    await writeFile(join(dir, `00000${i}.tar`), await tarShard(i === 1 ? [...all, ...extra] : all));
  }
}

beforeAll(async () => {
  fx = await writeCalibrationFixture(work.path, models);
  wds = join(work.path, 'wds');
  // Labels in `.cls` members, green-2's in a `.json` instead; two extra samples without a valid label.
  await writeTarShards(
    wds,
    (img, png) =>
      img.name === 'green-2.png'
        ? [
            { name: `${keyOf(img.name)}.png`, body: png },
            { name: `${keyOf(img.name)}.json`, body: JSON.stringify({ label: CLASS[img.truth] }) },
          ]
        : sampleMembers(keyOf(img.name), 'png', png, CLASS[img.truth]),
    [
      { name: 'extra-unlabelled.png', body: await colourPng([255, 0, 0]) },
      { name: 'extra-invalid.cls', body: 'grey' },
      { name: 'extra-invalid.png', body: await colourPng([96, 96, 96]) },
    ],
  );
  // Every `.cls` says 0: a labels CSV, when given, is the ground truth instead.
  clean = join(work.path, 'clean');
  await writeTarShards(clean, (img, png) => sampleMembers(keyOf(img.name), 'png', png, 0));
  pq = join(work.path, 'pq');
  await mkdir(pq);
  for (const i of [0, 1]) {
    const imgs = shardImages(i);
    const pngs = await Promise.all(imgs.map((img) => colourPng(img.rgb)));
    // One more row whose label is null: counted and left out.
    const extra = i === 1;
    await writeFile(
      join(pq, `part-${i}.parquet`),
      parquetBytes(
        [
          { name: 'key', data: [...imgs.map((img) => keyOf(img.name)), ...(extra ? ['extra'] : [])], type: 'STRING' },
          { name: 'png', data: [...pngs, ...(extra ? [await colourPng([0, 255, 0])] : [])].map((b) => new Uint8Array(b)), type: 'BYTE_ARRAY' },
          { name: 'label', data: [...imgs.map((img) => CLASS[img.truth]), ...(extra ? [null] : [])], type: 'INT32' },
        ],
        4,
      ),
    );
  }
});

/** A no-loss calibration of little → big on everything (as calibrate-cli's labeled one), its stderr captured. */
async function calibrate(name: string, o: Partial<CalibrateOptions>) {
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const std = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const { file, outcome } = await calibrateCommand({
      little: fx.littleSpec,
      big: fx.bigSpec,
      images: fx.images,
      rule: 'no-loss',
      out: join(work.path, name, 'calib.json'),
      calibrationFraction: 1,
      cache: fx.cache,
      progress: false,
      ...o,
    });
    return { file, outcome, stderr: err.mock.calls.map((c) => String(c[0])).join(''), stdout: std.mock.calls.map((c) => String(c[0])).join('') };
  } finally {
    err.mockRestore();
    std.mockRestore();
  }
}

/** What must match between two calibrations of the same images: the choice and its figures. */
const choice = (f: CalibrationFile) => ({ rule: f.rule, metric: f.metric, threshold: f.threshold, expected: f.expected, test: f.test });

let loose: Awaited<ReturnType<typeof calibrate>> | undefined;
async function looseCalibration() {
  loose ??= await calibrate('loose', { labels: fx.labels });
  return loose;
}

describe('cascade calibrate on sharded datasets', () => {
  it("WebDataset shards labelled by .cls (and .json): the loose files' calibration; samples without a valid label counted and left out", async () => {
    const { file: expected } = await looseCalibration();
    expect(expected.threshold).toBeCloseTo(0.319, 3);
    const r = await calibrate('wds', { images: join(wds, '{000000..000001}.tar') });
    expect(choice(r.file)).toEqual(choice(expected));
    expect(r.file.expected).toMatchObject({ images: 12, fractionToBig: 2 / 12, accuracy: 10 / 12, bigAccuracy: 10 / 12, littleAccuracy: 8 / 12 });
    expect(r.file.skippedImages).toBe(0);
    expect(r.file.unlabeledImages).toBe(2);
    expect(r.stderr).toContain(
      'cascade: warning: 2 of 14 samples left out for want of a label: 1 without one, 1 with an invalid one (e.g. ' +
        `${join(wds, '000001.tar')}#extra-unlabelled has no .cls or .json member)`,
    );
    expect(r.stdout).toContain('calibration: 12 images (2 left out: no valid label in their shard), test: 0 images');
    // The same probabilities sample by sample: the curves are equal point for point.
    expect(r.outcome.curves).toEqual(loose!.outcome.curves);
  });

  it("the same shards on s3rver (s3://…/*.tar): the loose files' calibration", async () => {
    const { file: expected } = await looseCalibration();
    for (const shard of await readdir(wds))
      await s3.client.send(new PutObjectCommand({ Bucket: 'shards', Key: `wds/${shard}`, Body: await readFile(join(wds, shard)) }));
    const config = join(work.path, 's3-config.json');
    await writeFile(config, JSON.stringify({ s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } }));
    const r = await calibrate('wds-s3', { images: 's3://shards/wds/*.tar', config });
    expect(choice(r.file)).toEqual(choice(expected));
    expect(r.file.unlabeledImages).toBe(2);
  });

  it("Parquet files with --label-column: the loose files' calibration; a null label counted", async () => {
    const { file: expected } = await looseCalibration();
    const r = await calibrate('pq', { images: join(pq, '*.parquet'), labelColumn: 'label' });
    expect(choice(r.file)).toEqual(choice(expected));
    expect(r.file.unlabeledImages).toBe(1);
    expect(r.stderr).toMatch(
      /1 of 13 samples left out for want of a label: 1 without one, 0 with an invalid one \(e\.g\. .*part-1\.parquet row 6 column "label" has no label\)/,
    );
  });

  it('a labels CSV keyed <shard>#<sampleKey> is the ground truth over the shards’ own labels', async () => {
    const { file: expected } = await looseCalibration();
    const csv = join(work.path, 'shard-labels.csv');
    const rows = [0, 1].flatMap((i) => shardImages(i).map((img) => `00000${i}.tar#${keyOf(img.name)},${CLASS[img.truth]}`));
    await writeFile(csv, `key,label\n${rows.join('\n')}\n`);
    const r = await calibrate('csv', { images: join(clean, '{000000..000001}.tar'), labels: csv });
    expect(choice(r.file)).toEqual(choice(expected));
    expect(r.file.unlabeledImages).toBeUndefined();
    // Without the CSV the shards' `.cls` (all 0: red) are the truth, and the figures change.
    const own = await calibrate('clean-own', { images: join(clean, '{000000..000001}.tar') });
    expect(own.file.expected.bigAccuracy).toBeCloseTo(2 / 12);
  });

  it('caches probabilities by <shard>#<sampleKey>: a changed shard is not read again, --no-cache reads it', async () => {
    const cache = join(work.path, 'cache-shards');
    await seedColourTimings(cache, models);
    const dir = join(work.path, 'wds-cached');
    await writeTarShards(dir, (img, png) => sampleMembers(keyOf(img.name), 'png', png, CLASS[img.truth]));
    const source = join(dir, '{000000..000001}.tar');
    const first = await calibrate('cached-1', { images: source, cache });
    const index = await Promise.all(
      (await readdir(cache)).filter((f) => f.endsWith('.json')).map(async (f) => JSON.parse(await readFile(join(cache, f), 'utf8')) as { keys: string[] }),
    );
    expect(index).toHaveLength(2);
    for (const { keys } of index) expect(keys).toContain(`${join(dir, '000001.tar')}#grey-64`);
    // The second shard's greys become saturated red under the same keys: scoring them again would change the curve.
    const red = await colourPng([255, 0, 0]);
    await writeTarShards(dir, (img, png) => sampleMembers(keyOf(img.name), 'png', img.truth === 'other' ? red : png, CLASS[img.truth]));
    expect((await calibrate('cached-2', { images: source, cache })).file.expected).toEqual(first.file.expected);
    expect((await calibrate('cached-3', { images: source, cache: false })).file.expected).not.toEqual(first.file.expected);
  });

  it('refuses in one line: no valid label at all, --label-column on shards that are not Parquet, both --labels and --label-column', async () => {
    await expect(quietly(() => calibrateCommand(base({ images: join(pq, '*.parquet'), labelColumn: 'key' })))).rejects.toThrow(
      new ConfigError(
        `none of the 13 samples of ${join(pq, '*.parquet')} has a valid label, e.g. ${join(pq, 'part-0.parquet')} row 0 column "key": "red-1" is not a class index`,
      ),
    );
    await expect(quietly(() => calibrateCommand(base({ images: join(wds, '*.tar'), labelColumn: 'label' })))).rejects.toThrow(
      /--label-column names a column of a Parquet source/,
    );
    await expect(quietly(() => calibrateCommand(base({ images: join(pq, '*.parquet'), labelColumn: 'label', labels: fx.labels })))).rejects.toThrow(
      /--labels or --label-column, not both/,
    );
  });
});

/** calibrate's options for a refusal test. */
const base = (o: Partial<CalibrateOptions>): CalibrateOptions => ({
  little: fx.littleSpec,
  big: fx.bigSpec,
  images: fx.images,
  rule: 'no-loss',
  out: join(work.path, 'refused', 'calib.json'),
  calibrationFraction: 1,
  cache: fx.cache,
  progress: false,
  ...o,
});

describe('cascade calibrate --label-column from the command line (dist/)', () => {
  it('no valid label in the column: one line on stderr, exit 2, no calib.json', async () => {
    const out = join(work.path, 'cli-refused', 'calib.json');
    const args = ['calibrate', '--little', fx.littleSpec, '--big', fx.bigSpec, '--images', join(pq, '*.parquet'), '--label-column', 'key'];
    const r = await promisify(execFile)(process.execPath, ['bin/cascade.js', ...args, '--out', out, '--cache', fx.cache, '--rule', 'no-loss'], {
      env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
    }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in r && r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      `cascade: none of the 13 samples of ${join(pq, '*.parquet')} has a valid label, e.g. ${join(pq, 'part-0.parquet')} row 0 column "key": "red-1" is not a class index`,
    );
    await expect(readFile(out)).rejects.toThrow(/ENOENT/);
  });
});

describe('the other calibration commands on sharded datasets', () => {
  const shards = () => join(wds, '{000000..000001}.tar');

  it("calibrate --stages, search-saver and frontier: the loose files' results from the shards' labels", async () => {
    const chain = (images: string, labels?: string) =>
      quietly(() =>
        calibrateChainCommand({
          stages: [fx.littleSpec, fx.convSpec, fx.bigSpec],
          images,
          labels,
          rule: 'no-loss',
          out: join(work.path, 'chain', `${labels ? 'loose' : 'shards'}.json`),
          calibrationFraction: 1,
          cache: fx.cache,
          progress: false,
        }),
      );
    const [looseChain, shardChain] = [await chain(fx.images, fx.labels), await chain(shards())];
    expect(shardChain.expected).toEqual(looseChain.expected);
    expect(shardChain.stages.map((s) => s.threshold)).toEqual(looseChain.stages.map((s) => s.threshold));
    expect(shardChain.unlabeledImages).toBe(2);

    const saver = (images: string, labels?: string) =>
      searchSaverCommand({
        big: fx.bigSpec,
        candidates: [fx.convSpec, fx.littleSpec],
        images,
        labels,
        rule: 'no-loss',
        calibrationFraction: 1,
        cache: fx.cache,
        progress: false,
        print: false,
      });
    expect(await quietly(() => saver(shards()))).toEqual(await quietly(() => saver(fx.images, fx.labels)));

    const frontier = (images: string, labels?: string) =>
      quietly(() =>
        frontierCommand({ models: [fx.littleSpec, fx.convSpec, fx.bigSpec], images, labels, threshold: 0.9, cache: fx.cache, progress: false, json: true }),
      );
    const [looseFrontier, shardFrontier] = [await frontier(fx.images, fx.labels), await frontier(shards())];
    expect(shardFrontier.quality).toBe('top-1');
    expect(shardFrontier.rows).toEqual(looseFrontier.rows);
  });
});
