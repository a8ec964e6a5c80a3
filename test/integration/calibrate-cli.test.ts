/**
 * `cascade calibrate`, `cascade search-saver` and `cascade run --calibration` end to end on
 * generated models whose outputs are known, so every threshold and count is exact.
 *
 * Images (little logits [8r, 8g, 8b, 2], big logits [8r, 8g, 8b, 4 + 2(r+g+b)]):
 *   6 saturated red/green/blue  little ≥ 0.996 and right, big right (agree)
 *   2 dark red (r = 0.5)        little "red" at 0.853, right (truth red); big says "other": wrong
 *   4 greys                     little ≤ 0.32 and wrong, big "other": right
 * Little confidences (maxprob): saturated 0.9969, dark red 0.855, greys 0.25 / 0.297 / 0.319 / 0.328.
 * Big alone: 10/12. Keeping the 8 confident images and sending the greys to big: 12/12. Keeping
 * also the two brightest greys (little wrong) still gives 10/12 = big's accuracy with only 2/12
 * sent to big, so that is the no-loss rule's (cheaper) pick. Specs fix the costs: little 0.1,
 * big 1, conv 0.2 GMACs (the colour models' graphs cost the same few MACs).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { CalibrationFile, ChainCalibrationFile } from '../../config/calibration.js';
import { loadConfig } from '../../config/load-config.js';
import { calibrateCommand } from '../../cli/commands/calibrate.js';
import { calibrateChainCommand } from '../../cli/commands/calibrate-chain.js';
import { runCommand } from '../../cli/commands/run.js';
import { searchSaverCommand } from '../../cli/commands/search-saver.js';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { startS3 } from '../helpers/s3.js';
import { CALIBRATION_IMAGES as IMAGES, CLASS, colourSpecFile, writeCalibrationFixture } from '../helpers/calibration-fixture.js';
import { dataContext, listImages, scoreModel } from '../../cli/calibration-data.js';
import { rankConfidence, rankReference } from '../../pipeline/routing.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';

const exec = promisify(execFile);
const work = withTempDir('calibrate');
const redis = withRedis();
const models = withModels(work);
let images: string;
let labels: string;
let littleSpec: string;
let bigSpec: string;
let convSpec: string;

async function spec(name: string, path: string, gmacs: number): Promise<string> {
  return colourSpecFile(work.path, name, path, models.labels, gmacs);
}

beforeAll(async () => {
  ({ images, labels, littleSpec, bigSpec, convSpec } = await writeCalibrationFixture(work.path, models));
});

/** The labeled no-loss calibration several tests read, made once by whichever test needs it first (each test runs alone too). */
let labeled: ReturnType<typeof calibrateCommand> | undefined;
function labeledCalibration(): ReturnType<typeof calibrateCommand> {
  labeled ??= calibrateCommand({
    little: littleSpec,
    big: bigSpec,
    images,
    labels,
    rule: 'no-loss',
    out: join(work.path, 'cal-labeled', 'calib.json'),
    calibrationFraction: 1,
    cache: join(work.path, 'cache'),
    progress: false,
  });
  return labeled;
}

describe('cascade calibrate', () => {
  it('labeled: no-loss and TinySaver pick the cheapest point at big accuracy; the curve shows the cascade beating big', async () => {
    const out = join(work.path, 'cal-labeled', 'calib.json');
    const { file, outcome } = await labeledCalibration();
    expect(file.rule).toBe('no-loss');
    expect(file.metric).toBe('maxprob'); // all metrics order these images alike; ties go to the first
    expect(file.threshold).toBeCloseTo(0.319, 3);
    expect(file.expected).toMatchObject({ images: 12, fractionToBig: 2 / 12, accuracy: 10 / 12, bigAccuracy: 10 / 12, littleAccuracy: 8 / 12 });
    expect(file.expected.gmacsPerImage).toBeCloseTo(0.1 + 2 / 12);
    expect(file.expected.saved).toBeCloseTo(1 - (0.1 + 2 / 12));
    // Little and big agree on the 6 saturated images of the 10 kept.
    expect(file.expected.agreement).toBeCloseTo(6 / 10);
    // Oracle: big only for the 4 greys (little wrong, big right).
    expect(file.expected.oracleSaved).toBeCloseTo(1 - (0.1 + 4 / 12));
    expect(file.test).toBeNull();
    const tiny = outcome.rules.tinysaver;
    expect(tiny && 'rule' in tiny ? tiny.threshold : null).toBeCloseTo(0.319, 3);
    const beatsBig = outcome.curves.maxprob!.find((p) => p.accepted === 8)!;
    expect([beatsBig.fractionToBig, beatsBig.cascadeAccuracy]).toEqual([4 / 12, 1]);

    // The files beside calib.json: valid JSON, CSV with a row per curve point, the SVG.
    expect(CalibrationFile.parse(JSON.parse(await readFile(out, 'utf8')))).toEqual(file);
    const csv = (await readFile(join(work.path, 'cal-labeled', 'calib.curve.csv'), 'utf8')).trim().split('\n');
    const curve = JSON.parse(await readFile(join(work.path, 'cal-labeled', 'calib.curve.json'), 'utf8')) as unknown[];
    expect(csv.length - 1).toBe(curve.length);
    const svg = await readFile(join(work.path, 'cal-labeled', 'calib.svg'), 'utf8');
    expect(svg).toContain('no-loss: maxprob ≥ 0.319');
    expect(svg).toContain('big alone 83.3%');
  });

  it('label-free at 99% agreement keeps only the saturated colours (little and big disagree on dark red)', async () => {
    const { file } = await calibrateCommand({
      little: littleSpec,
      big: bigSpec,
      images,
      rule: 'label-free',
      out: join(work.path, 'cal-free', 'calib.json'),
      calibrationFraction: 1,
      cache: join(work.path, 'cache'),
      progress: false,
    });
    expect(file.rule).toBe('label-free');
    expect(file.expected).toMatchObject({ fractionToBig: 6 / 12, agreement: 1, accuracy: null, oracleSaved: null });
    expect(file.expected.agreementInterval.high).toBeCloseTo(1, 12);
    expect(file.expected.agreementInterval.low).toBeCloseTo(0.61, 2); // Wilson 95% for 6/6
  });

  it('reuses cached probabilities: a changed image file is not read again', async () => {
    const cache = join(work.path, 'cache-reuse');
    const first = await calibrateCommand({
      little: littleSpec,
      big: bigSpec,
      images,
      labels,
      rule: 'no-loss',
      out: join(work.path, 'cal-c1', 'calib.json'),
      calibrationFraction: 1,
      cache,
      progress: false,
    });
    // Overwrite a grey with saturated red: scoring it again would change the curve.
    const grey = join(images, 'grey-64.png');
    const original = await readFile(grey);
    await writeFile(
      grey,
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } })
        .png()
        .toBuffer(),
    );
    try {
      const cached = await calibrateCommand({
        little: littleSpec,
        big: bigSpec,
        images,
        labels,
        rule: 'no-loss',
        out: join(work.path, 'cal-c2', 'calib.json'),
        calibrationFraction: 1,
        cache,
        progress: false,
      });
      expect(cached.file.expected).toEqual(first.file.expected);
      const fresh = await calibrateCommand({
        little: littleSpec,
        big: bigSpec,
        images,
        labels,
        rule: 'no-loss',
        out: join(work.path, 'cal-c3', 'calib.json'),
        calibrationFraction: 1,
        cache: false,
        progress: false,
      });
      expect(fresh.file.expected).not.toEqual(first.file.expected);
    } finally {
      await writeFile(grey, original);
    }
  });

  it('splits into calibration and test halves and reports the test half', async () => {
    const { file } = await calibrateCommand({
      little: littleSpec,
      big: bigSpec,
      images,
      labels,
      rule: 'no-loss',
      out: join(work.path, 'cal-split', 'calib.json'),
      cache: join(work.path, 'cache'),
      progress: false,
    });
    expect(file.settings.calibrationFraction).toBe(0.5);
    expect(file.expected.images + file.test!.images).toBe(12);
    expect(file.expected.images).toBe(6);
  });

  it('reads images and labels from S3 (s3rver), with the same result as from the folder', async () => {
    const s3 = await startS3({ buckets: ['calib'] });
    // Credentials come from the AWS SDK's default chain, here the environment (s3rver's dummy keys).
    process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    try {
      for (const img of IMAGES)
        await s3.client.send(new PutObjectCommand({ Bucket: 'calib', Key: `photos/${img.name}`, Body: await readFile(join(images, img.name)) }));
      await s3.client.send(new PutObjectCommand({ Bucket: 'calib', Key: 'gt.csv', Body: await readFile(labels) }));
      const config = join(work.path, 's3-config.json');
      await writeFile(config, JSON.stringify({ little: littleSpec, big: bigSpec, s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } }));
      const { file } = await calibrateCommand({
        config,
        images: 's3://calib/photos/',
        labels: 's3://calib/gt.csv',
        rule: 'no-loss',
        out: join(work.path, 'cal-s3', 'calib.json'),
        calibrationFraction: 1,
        cache: false,
        progress: false,
      });
      expect(file.expected).toMatchObject({ images: 12, fractionToBig: 2 / 12, accuracy: 10 / 12 });
    } finally {
      await s3.stop();
    }
  });

  it('labels missing for some images: one clear line from the CLI, exit code 2', async () => {
    const partial = join(work.path, 'partial.csv');
    await writeFile(
      partial,
      `file,class_index\n${IMAGES.filter((i) => !i.name.startsWith('grey'))
        .map((i) => `${i.name},${CLASS[i.truth]}`)
        .join('\n')}\n`,
    );
    const err = await exec(
      process.execPath,
      [
        'bin/cascade.js',
        'calibrate',
        '--little',
        littleSpec,
        '--big',
        bigSpec,
        '--images',
        images,
        '--labels',
        partial,
        '--out',
        join(work.path, 'x.json'),
        '--cache',
        join(work.path, 'cache'),
        '--calibration-fraction',
        '1',
        '--rule',
        'no-loss',
      ],
      {
        env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
      },
    ).catch((e: { code: number; stderr: string }) => e);
    expect('code' in err && err.code).toBe(2);
    expect((err as { stderr: string }).stderr.trim()).toMatch(
      /^cascade: no-loss rule needs a ground-truth label for every image, but 4 of 12 lack one \(e.g. "[^"]*grey-\d+.png"/,
    );
  });
});

describe('cascade calibrate, guaranteed rules (the default)', () => {
  const cli = (args: string[]) =>
    exec(
      process.execPath,
      ['bin/cascade.js', 'calibrate', '--little', littleSpec, '--big', bigSpec, '--images', images, '--cache', join(work.path, 'cache'), ...args],
      {
        env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
      },
    ).catch((e: { code: number; stdout: string; stderr: string }) => e);

  it('refuses a target 12 images cannot certify: one line naming the strongest certifiable target, exit 1, no calib.json', async () => {
    const out = join(work.path, 'cal-refused', 'calib.json');
    const r = await cli(['--out', out, '--calibration-fraction', '1']);
    expect('code' in r && r.code).toBe(1);
    // The default is rank alone at the full δ. The 6 saturated images agree at the top: 0 of 6 passes at
    // δ = 0.05 for α ≥ 1 − 0.05^(1/6) = 39.3%, i.e. target ≤ 60.7%.
    expect(r.stderr.trim()).toBe(
      'cascade: guaranteed rule refused: 12 calibration images cannot certify agreement ≥ 99.0% at δ = 0.05 (ltt); ' +
        'the strongest it certifies is 60.6%; 99.0% needs more images than this sample can estimate. ' +
        'Lower --target-agreement, add calibration images, or choose a point-estimate rule (--rule label-free) knowing it holds about half the time',
    );
    await expect(readFile(out)).rejects.toThrow(/ENOENT/);
    // Comparing margin and pnorm splits δ: at δ/2 = 0.025, α ≥ 1 − 0.025^(1/6) = 45.9%, i.e. target ≤ 54.1%.
    const split = await cli(['--out', out, '--calibration-fraction', '1', '--metric', 'margin', 'pnorm']);
    expect('code' in split && split.code).toBe(1);
    expect(split.stderr.trim()).toBe(
      'cascade: guaranteed rule refused: 12 calibration images cannot certify agreement ≥ 99.0% at δ = 0.025 (ltt); ' +
        'the strongest it certifies is 54.0%; 99.0% needs more images than this sample can estimate (δ split over 2 metrics: margin, pnorm). ' +
        'Lower --target-agreement, add calibration images, or choose a point-estimate rule (--rule label-free) knowing it holds about half the time',
    );
  });

  it('certifies a target the sample supports; calib.json and the report state the promise; audits are held to the bound', async () => {
    const out = join(work.path, 'cal-guaranteed', 'calib.json');
    const r = await cli(['--out', out, '--calibration-fraction', '1', '--target-agreement', '0.5', '--metric', 'maxprob']);
    expect('code' in r ? r.stderr : '').toBe('');
    const stdout = (r as { stdout: string }).stdout;
    // 6 saturated images agree at the top: P(Bin(6, 0.5) = 0) = 1/64 ≤ 0.05; adding the 2 dark reds (2 of 8 disagree) fails (37/256).
    expect(stdout).toContain(
      'promise: with probability ≥ 0.95, agreement with big on new images from the same distribution that the little model keeps is ≥ 50.00%',
    );
    const file = CalibrationFile.parse(JSON.parse(await readFile(out, 'utf8')));
    expect(file.rule).toBe('guaranteed');
    expect(file.guarantee).toMatchObject({ method: 'ltt', delta: 0.05, kind: 'agreement', level: 0.5, bound: 0.5, images: 12 });
    expect(file.threshold).toBeCloseTo(0.9969, 4);
    expect(file.expected).toMatchObject({ fractionToBig: 6 / 12, agreement: 1 });
    // Few images: the report warns with the interval's width (Wilson 95% for 6 of 6 is 61%–100%).
    expect((r as { stderr: string }).stderr).toMatch(
      /^cascade: warning: few images: the agreement on the 6 kept calibration images is 100\.0%, but its 95% interval is 61\.0%–100\.0% \(39\.0% wide\)/,
    );
    const config = join(work.path, 'audit-config.json');
    await writeFile(config, JSON.stringify({ little: littleSpec, big: bigSpec, audit: { fraction: 0.5 } }));
    const loaded = await loadConfig({ file: config, calibration: out });
    expect(loaded.audit?.expectAgreement).toBe(0.5);
  });
});

describe('cascade search-saver', () => {
  it('ranks the colour model first, reports the conv net, and skips a candidate as costly as big', async () => {
    const rows = await searchSaverCommand({
      big: bigSpec,
      candidates: [convSpec, littleSpec, bigSpec],
      images,
      labels,
      rule: 'no-loss',
      calibrationFraction: 1,
      cache: join(work.path, 'cache'),
      progress: false,
      json: true,
    });
    expect(rows.map((r) => [r.candidate, r.rank])).toEqual([
      ['colour-little.onnx', 1],
      ['conv-net.onnx', 2],
      ['colour-big.onnx', null],
    ]);
    expect(rows[0]).toMatchObject({ fractionToBig: 2 / 12, cascadeAccuracy: 10 / 12, top1: 8 / 12, bigAccuracy: 10 / 12 });
    expect(rows[0]!.saved).toBeCloseTo(1 - (0.1 + 2 / 12));
    expect(rows[0]!.oracleSaved).toBeCloseTo(1 - (0.1 + 4 / 12));
    expect(rows[2]!.note).toMatch(/^not-cheaper: /);
  });
});

describe('cascade calibrate --stages (a chain)', () => {
  const cli = (args: string[]) =>
    exec(process.execPath, ['bin/cascade.js', 'calibrate', '--images', images, '--cache', join(work.path, 'cache'), '--calibration-fraction', '1', ...args], {
      env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
    }).catch((e: { code: number; stdout: string; stderr: string }) => e);

  it('the guaranteed rule is the default: 12 images cannot certify 99%, one line and exit 1, no calib.json', async () => {
    const out = join(work.path, 'cal-chain-refused', 'calib.json');
    const r = await cli(['--stages', littleSpec, littleSpec, bigSpec, '--out', out]);
    expect('code' in r && r.code).toBe(1);
    // As for the pair: the 6 saturated images agree at the top, which certifies at most 54% at δ/2 = 0.025.
    expect(r.stderr.trim()).toBe(
      'cascade: guaranteed rule refused: 12 calibration images cannot certify agreement with colour-big.onnx ≥ 99.0% on images an earlier stage keeps ' +
        "at δ = 0.025 (ltt along the chain's quantile path); the strongest it certifies is 54.0%; 99.0% needs more images than this sample can estimate " +
        '(δ split over 2 metrics: margin, pnorm). Lower --target-agreement, add calibration images, or choose a point-estimate rule (--rule label-free) ' +
        'knowing it holds about half the time',
    );
    await expect(readFile(out)).rejects.toThrow(/ENOENT/);
  });

  it('the default certifies a target the sample supports; calib.json and the report state the promise', async () => {
    const out = join(work.path, 'cal-chain-guaranteed', 'calib.json');
    const r = await cli(['--stages', littleSpec, littleSpec, bigSpec, '--out', out, '--target-agreement', '0.5', '--metric', 'maxprob']);
    expect('code' in r ? r.stderr : '').toBe('');
    // Path level 6 of 12 keeps the 6 saturated images at the first stage (P(Bin(6, 0.5) = 0) = 1/64 ≤ 0.05); level 7 adds
    // the 2 dark reds, which big calls "other" (P(Bin(8, 0.5) ≤ 2) = 37/256): the test stops there.
    expect((r as { stdout: string }).stdout).toContain(
      '  promise: with probability ≥ 0.95, agreement with colour-big.onnx on new images from the same distribution that an earlier stage keeps is ≥ 50.00%\n' +
        '  certified (ltt, δ = 0.05) on the 6 of 12 calibration images accepted before colour-big.onnx\n',
    );
    const file = ChainCalibrationFile.parse(JSON.parse(await readFile(out, 'utf8')));
    expect(file.rule).toBe('guaranteed');
    expect(file.settings).toMatchObject({ delta: 0.05, method: 'ltt', targetAgreement: 0.5, metrics: ['maxprob'] });
    expect(file.guarantee).toMatchObject({ method: 'ltt', delta: 0.05, kind: 'agreement', level: 0.5, bound: 0.5, images: 12, accepted: 6, quantile: 0.5 });
    expect(file.stages.map((s) => s.threshold)).toEqual([expect.closeTo(0.9969, 4), expect.closeTo(0.9969, 4), null]);
    expect(file.expected).toMatchObject({ images: 12, reached: [12, 6, 6], kept: [6, 0, 6], agreement: 1 });
  });

  it('guaranteed-drop covers a little/big pair only: one line', async () => {
    await expect(
      calibrateChainCommand({
        stages: [littleSpec, littleSpec, bigSpec],
        images,
        labels,
        rule: 'guaranteed-drop',
        out: join(work.path, 'cal-chain-drop', 'calib.json'),
        calibrationFraction: 1,
        cache: join(work.path, 'cache'),
        progress: false,
      }),
    ).rejects.toThrow('--rule guaranteed-drop is for a little/big pair; a chain takes guaranteed (the default), tinysaver, no-loss or label-free');
  });

  it('tiny → same-model middle → big: the middle stage cannot help and is capped at 1; run applies both thresholds', async () => {
    const middle = await spec('middle', models.colourLittleFp16, 0.2);
    const out = join(work.path, 'cal-chain', 'calib.json');
    const file = await calibrateChainCommand({
      stages: [littleSpec, middle, bigSpec],
      images,
      labels,
      rule: 'no-loss',
      out,
      calibrationFraction: 1,
      cache: join(work.path, 'cache'),
      progress: false,
    });
    expect(file.kind).toBe('chain');
    expect(file.metric).toBe('maxprob');
    expect(file.stages.map((s) => s.threshold)).toEqual([expect.closeTo(0.319, 3), 1, null]);
    expect(file.reasons[1]).toMatch(/this stage could be dropped/);
    expect(file.expected).toMatchObject({ images: 12, reached: [12, 2, 2], kept: [10, 0, 2], accuracy: 10 / 12, lastAccuracy: 10 / 12 });
    expect(file.expected.gmacsPerImage).toBeCloseTo(0.1 + (2 / 12) * 0.2 + (2 / 12) * 1);

    const config = join(work.path, 'chain-config.json');
    await writeFile(
      config,
      JSON.stringify({
        redisUrl: redis.url,
        prefix: `ch${Math.random().toString(36).slice(2, 7)}`,
        batchSize: 4,
        stages: [{ model: littleSpec, threshold: 0.5 }, { model: middle, threshold: 0.5 }, { model: bigSpec }],
      }),
    );
    const summary = await runCommand(images, { out: join(work.path, 'chain-out'), config, calibration: out, progress: false, json: true });
    expect(summary.stages.map((s) => [s.name, s.images, s.accepted])).toEqual([
      ['little', 12, 10],
      ['stage1', 2, 0],
      ['big', 2, 2],
    ]);
    // A chain calibration needs the config's stages; a two-stage run is refused clearly.
    await expect(
      runCommand(images, { out: join(work.path, 'chain-out2'), little: littleSpec, big: bigSpec, calibration: out, progress: false }),
    ).rejects.toThrow(/is for a 3-stage chain; list the same models under 'stages:'/);
  });
});

describe('cascade run --calibration', () => {
  it('routes with the calibrated threshold: 10 little, 2 big', async () => {
    await labeledCalibration();
    const calib = join(work.path, 'cal-labeled', 'calib.json');
    const config = join(work.path, 'run-config.json');
    await writeFile(config, JSON.stringify({ redisUrl: redis.url, prefix: `cal${Math.random().toString(36).slice(2, 7)}`, batchSize: 4 }));
    const summary = await runCommand(images, {
      out: join(work.path, 'run-out'),
      little: littleSpec,
      big: bigSpec,
      config,
      calibration: calib,
      progress: false,
      json: true,
    });
    expect(summary.threshold).toBeCloseTo(0.319, 3);
    expect(summary.stages.map((s) => [s.name, s.images, s.accepted])).toEqual([
      ['little', 12, 10],
      ['big', 2, 2],
    ]);
    // The summary holds the calibration's promise beside what the run did: here the same images.
    expect(summary.calibration).toMatchObject({
      rule: 'no-loss',
      metric: 'maxprob',
      expected: { fractionToBig: 2 / 12 },
      realised: { fractionToBig: 2 / 12, agreement: null },
    });
    expect(summary.calibration!.realised.gmacsPerImage).toBeCloseTo(summary.calibration!.expected.gmacsPerImage);
  });

  it('calib.json pins each model by content with its probe; a run whose machine answers differently is refused', async () => {
    await labeledCalibration();
    const calib = JSON.parse(await readFile(join(work.path, 'cal-labeled', 'calib.json'), 'utf8'));
    const sha = async (spec: string) =>
      createHash('sha256')
        .update(await readFile(JSON.parse(await readFile(spec, 'utf8')).path))
        .digest('hex');
    expect(calib.little.pin).toMatchObject({ sha256: await sha(littleSpec), numerics: 'exact', probe: { provider: 'cpu', outputs: expect.any(Array) } });
    expect(calib.big.pin.sha256).toBe(await sha(bigSpec));
    const config = join(work.path, 'run-config-refused.json');
    await writeFile(config, JSON.stringify({ redisUrl: redis.url, prefix: `calr${Math.random().toString(36).slice(2, 7)}`, batchSize: 4 }));
    // The calibrating machine's little model as another CPU might have answered: 0.05 higher everywhere.
    for (const o of calib.little.pin.probe.outputs) o.top = o.top.map(([c, p]: [number, number]) => [c, p + 0.05]);
    calib.little.pin.probe.platform = { arch: 'x64', cpuFlags: ['avx2', 'fma'], onnxruntime: '1.30.0' };
    const elsewhere = join(work.path, 'cal-labeled', 'calib-elsewhere.json');
    await writeFile(elsewhere, JSON.stringify(calib));
    await expect(
      runCommand(images, { out: join(work.path, 'run-refused'), little: littleSpec, big: bigSpec, config, calibration: elsewhere, progress: false }),
    ).rejects.toThrow(
      /^calibration .*calib-elsewhere\.json does not hold here: .* answers differently here: its probe differs by up to 0\.05\d* \(tolerance 0\.002\) between the calibrating machine \(x64 \[avx2 fma\], onnxruntime 1\.30\.0, numerics exact\) and this one/,
    );
    // A different file under the same name is refused by content.
    calib.little.pin.sha256 = '0'.repeat(64);
    await writeFile(elsewhere, JSON.stringify(calib));
    await expect(
      runCommand(images, { out: join(work.path, 'run-refused'), little: littleSpec, big: bigSpec, config, calibration: elsewhere, progress: false }),
    ).rejects.toThrow(/it measured .* with sha256 000000000000, but this run's little model/);
  });
});

describe('metric rank (the guaranteed default)', () => {
  it('calibrate chooses rank and writes its reference; `run --calibration` routes exactly as rankConfidence ≥ threshold predicts', async () => {
    const out = join(work.path, 'cal-rank', 'calib.json');
    const { file } = await calibrateCommand({
      little: littleSpec,
      big: bigSpec,
      images,
      targetAgreement: 0.5,
      out,
      calibrationFraction: 1,
      cache: join(work.path, 'cache'),
      progress: false,
    });
    expect(file.rule).toBe('guaranteed');
    expect(file.metric).toBe('rank');
    expect(file.settings.metrics).toEqual(['rank']);
    expect(file.guarantee).toMatchObject({ delta: 0.05, level: 0.5, images: 12 });
    // The little model's rows, from the cache calibrate filled: the reference is theirs.
    const config = await loadConfig({ overrides: { little: littleSpec, big: bigSpec }, env: {} });
    const ctx = dataContext(config, { cache: join(work.path, 'cache'), progress: false, images });
    const refs = await listImages(images, ctx);
    const little = await scoreModel('little', config.little, refs, ctx);
    const rows = refs.map((ref) => little.scored.probs.get(ref)!);
    expect(file.rankReference).toEqual(rankReference(rows));
    const onDisk = CalibrationFile.parse(JSON.parse(await readFile(out, 'utf8')));
    expect(onDisk.rankReference).toEqual(file.rankReference);

    const runConfig = join(work.path, 'rank-config.json');
    await writeFile(runConfig, JSON.stringify({ redisUrl: redis.url, prefix: `rk${Math.random().toString(36).slice(2, 7)}`, batchSize: 4 }));
    const runOut = join(work.path, 'rank-out');
    const summary = await runCommand(images, {
      out: runOut,
      little: littleSpec,
      big: bigSpec,
      config: runConfig,
      calibration: out,
      progress: false,
      json: true,
    });
    expect(summary.metric).toBe('rank');
    const manifest = (await readFile(join(runOut, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    expect(manifest).toHaveLength(refs.length);
    const predicted = new Map(refs.map((ref, i) => [ref, rankConfidence(rows[i]!, file.rankReference!)]));
    for (const row of manifest) {
      const conf = predicted.get(row.key)!;
      expect([row.key, row.stage]).toEqual([row.key, conf >= file.threshold ? 'little' : 'big']);
      if (row.stage === 'little') expect(row.confidence).toBeCloseTo(conf, 6);
    }
    // 6 saturated images agree at the top (P(Bin(6, 0.5) = 0) = 1/64 ≤ 0.05); the dark reds disagree.
    expect(manifest.filter((r) => r.stage === 'little')).toHaveLength(6);
  });

  const cli = (args: string[]) =>
    exec(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' } }).catch(
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('is refused in one line, exit 2: without a calib.json (unless self-calibrating: its warm-up builds one), on a chain', async () => {
    const out = join(work.path, 'rank-refused');
    const plain = await cli(['run', images, '--little', littleSpec, '--big', bigSpec, '--metric', 'rank', '--out', out]);
    expect('code' in plain && plain.code).toBe(2);
    expect(plain.stderr.trim()).toBe(
      "cascade: metric rank comes from `cascade calibrate` (calib.json carries the calibration sample's margin and pnorm distributions); pass --calibration calib.json",
    );
    const submit = await cli(['submit', images, '--little', littleSpec, '--big', bigSpec, '--metric', 'rank', '--out', out]);
    expect('code' in submit && submit.code).toBe(2);
    expect(submit.stderr.trim()).toMatch(/^cascade: metric rank comes from `cascade calibrate`.*pass --calibration calib\.json$/);
    const chain = await cli([
      'calibrate',
      '--stages',
      littleSpec,
      littleSpec,
      bigSpec,
      '--images',
      images,
      '--no-cache',
      '--metric',
      'rank',
      '--out',
      join(out, 'c.json'),
    ]);
    expect('code' in chain && chain.code).toBe(2);
    expect(chain.stderr.trim()).toBe(
      'cascade: --metric rank: metric rank routes a little/big pair (its reference is the little model’s calibration sample); a chain takes maxprob, margin, entropy or pnorm',
    );
    await expect(readFile(join(out, 'c.json'))).rejects.toThrow(/ENOENT/);
  });
});
