/**
 * `cascade calibrate` on the 717 real photos of ../shared/assets (or $CASCADE_ASSETS) as four
 * WebDataset tar shards labelled by `.cls` members from labels/groundtruth.csv, against the same
 * photos as a folder with that CSV: shufflenet → mobilenetv2 under the no-loss rule on every
 * photo gives the same threshold, metric, expected figures and curves, since each sample is read
 * from its shard as a run's stage reads it. Skipped, with a message, where the assets are absent.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, parse, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { calibrateCommand } from '../../cli/commands/calibrate.js';
import { parseGroundTruth } from '../../pipeline/calibration/ground-truth.js';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { quietly } from '../helpers/quietly.js';
import { sampleMembers, tarShard } from '../helpers/shard-fixture.js';

const ASSETS = resolve(process.env.CASCADE_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets'));
const REPO = join(import.meta.dirname, '..', '..');
const GROUND_TRUTH = join(ASSETS, 'labels', 'groundtruth.csv');
const present = existsSync(join(ASSETS, 'images')) && existsSync(GROUND_TRUTH);
if (!present) console.warn(`sharded calibration real-photo test skipped: no assets at ${ASSETS} (set CASCADE_ASSETS)`);

describe.skipIf(!present)('cascade calibrate on the 717 photos as .cls-labelled tar shards', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-calib-shards-real-'));
    // The model specs find the models and the label file through CASCADE_ASSETS.
    vi.stubEnv('CASCADE_ASSETS', ASSETS);
    const truth = parseGroundTruth(await readFile(GROUND_TRUTH, 'utf8'), GROUND_TRUTH);
    const names = (await readdir(join(ASSETS, 'images'))).sort(compareKeys);
    await mkdir(join(dir, 'wds'));
    const per = Math.ceil(names.length / 4);
    for (let s = 0; s < 4; s++) {
      const members = [];
      for (const n of names.slice(s * per, (s + 1) * per))
        members.push(...sampleMembers(parse(n).name, parse(n).ext.slice(1), await readFile(join(ASSETS, 'images', n)), truth.get(n)));
      await writeFile(join(dir, 'wds', `00000${s}.tar`), await tarShard(members));
    }
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives the folder-and-CSV calibration: threshold, metric, expected figures and curves', { timeout: 900_000 }, async () => {
    const calibrate = (name: string, images: string, labels?: string) =>
      quietly(() =>
        calibrateCommand({
          little: join(REPO, 'config/models/shufflenet.yaml'),
          big: join(REPO, 'config/models/mobilenetv2.yaml'),
          images,
          labels,
          rule: 'no-loss',
          calibrationFraction: 1,
          out: join(dir, name, 'calib.json'),
          cache: join(dir, 'cache'),
          progress: false,
        }),
      );
    const loose = await calibrate('loose', join(ASSETS, 'images'), GROUND_TRUTH);
    const shards = await calibrate('shards', join(dir, 'wds', '{000000..000003}.tar'));
    const choice = (f: typeof loose.file) => ({ metric: f.metric, threshold: f.threshold, expected: f.expected, skipped: f.skippedImages });
    expect(choice(shards.file)).toEqual(choice(loose.file));
    expect(shards.file.expected.images).toBe(717);
    expect(shards.file.unlabeledImages).toBeUndefined();
    expect(shards.outcome.curves).toEqual(loose.outcome.curves);
    console.log(
      `717 photos as tar shards: no-loss maxprob ≥ ${shards.file.threshold.toFixed(4)}, to big ${(100 * shards.file.expected.fractionToBig).toFixed(1)}%, ` +
        `cascade top-1 ${(100 * shards.file.expected.accuracy!).toFixed(1)}% (same as the folder)`,
    );
  });
});
