/**
 * The review loop closed through object storage and schedules (issue 27), on a real redis-server
 * and s3rver: a run written to S3 is reviewed (Label Studio's JSON export, simulated from the
 * truth), the review file read from s3:// by `import reviews`, `calibrate --reviews s3://…`, and
 * a schedule with `--calibration-from` whose firing certifies its threshold from the latest
 * reviewed run and records the reviews it used; too few reviews, or none, is a recorded refusal
 * that keeps the schedule's own threshold.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CalibrateOptions, calibrateCommand } from '../../cli/commands/calibrate.js';
import { exportReviewCommand } from '../../cli/commands/export-review.js';
import { importReviewsCommand } from '../../cli/commands/import-reviews.js';
import { runCommand } from '../../cli/commands/run.js';
import { scheduleAddCommand, scheduleRemoveCommand } from '../../cli/commands/schedule.js';
import { readRunStatus } from '../../cli/commands/status.js';
import { formatRunStatus } from '../../cli/format-status.js';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { startRuntime, type Runtime } from '../../workers/cascade-runtime.js';
import { colourCascade, writeAlternatingImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';
import { type ExportedTask, labelStudioJsonExport } from '../helpers/label-studio-reviewer.js';
import { quietly } from '../helpers/quietly.js';
import { uniquePrefix } from '../helpers/redis.js';
import { fakeRunSpec } from '../helpers/run-spec.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { reviewedRunCandidates } from '../../workers/firing-calibration.js';

withS3rverCredentials();
const work = withTempDir('reviews-loop');
const redis = withRedis();
const s3 = withS3({ buckets: ['runs'] });
const models = withModels(work);
const N = 60;
let images: string;
let config: string;

/** What the human says: odd images are red, even ones grey ("other"). */
const truth = (key: string) => (Number(/img-(\d+)\.png$/.exec(key)![1]) % 2 ? 'red' : 'other');

async function getObject(key: string): Promise<Buffer> {
  const body = await (await s3.client.send(new GetObjectCommand({ Bucket: 'runs', Key: key }))).Body!.transformToByteArray();
  return Buffer.from(body);
}

/** Label the images into `out`, export `budget` review tasks, annotate them (or `take` of the random slice) honestly, upload the file and import it from S3. */
async function reviewedRun(runId: string, out: string, budget: number, take = budget): Promise<{ reviewed: number; file: string }> {
  await quietly(() => runCommand(images, { out, config, progress: false, json: true, runId }));
  const tasksFile = join(work.path, `${runId}-tasks.json`);
  await quietly(() =>
    exportReviewCommand({ run: out, format: 'label-studio', out: tasksFile, maxConfidence: 0.5, include: 'errors,disagreements,low-confidence', budget }),
  );
  // Fewer than exported: random-slice tasks only, so the calibration sample is exactly `take`.
  const exported = JSON.parse(await readFile(tasksFile, 'utf8')) as ExportedTask[];
  const tasks = take < exported.length ? exported.filter((t) => t.data.reason === 'random').slice(0, take) : exported;
  const annotated = labelStudioJsonExport(tasks, (t) => [{ annotator: 3, choice: truth(t.data.key!) }]);
  const key = `annotated/${runId}.json`;
  await s3.client.send(new PutObjectCommand({ Bucket: 'runs', Key: key, Body: JSON.stringify(annotated) }));
  const file = `s3://runs/${key}`;
  const result = await quietly(() => importReviewsCommand([file], { run: out, labels: models.labels, json: true }));
  return { reviewed: result.reviewed, file };
}

/** The merged run a firing of `schedule` started (undefined after 30 s). */
async function mergedRun(runtime: Runtime, schedule: string): Promise<string | undefined> {
  for (let i = 0; i < 300; i++) {
    for (const id of await runtime.tracker.runIds()) if (id.startsWith(`${schedule}-`) && (await runtime.tracker.progress(id))?.mergedAt) return id;
    await sleep(100);
  }
  return undefined;
}

beforeAll(async () => {
  images = join(work.path, 'images');
  await writeAlternatingImages(images, N);
  process.env.CASCADE_S3_ENDPOINT = s3.endpoint;
  config = join(work.path, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify(
      colourCascade(models, {
        batchSize: 8,
        redisUrl: redis.url,
        prefix: uniquePrefix('loop'),
        sources: { localRoots: [work.path] },
        s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' },
      }),
    ),
  );
  return () => {
    delete process.env.CASCADE_S3_ENDPOINT;
  };
});

describe('review files and reviewed runs in S3', () => {
  let day1: { reviewed: number; file: string };
  const run = 's3://runs/nightly/day1/';
  const rule = { rule: 'guaranteed-drop', maxDrop: 0.2, delta: 0.05 } as const;
  let certified: { metric: string; threshold: number };

  beforeAll(async () => {
    day1 = await reviewedRun('day1', run, N);
  }, 120_000);

  it('import reviews reads s3://bucket/annotated.json; a missing one is a one-line usage error naming it', async () => {
    expect(day1.reviewed).toBeGreaterThan(50);
    const stored = (await getObject('nightly/day1/reviews.jsonl')).toString('utf8').trim().split('\n');
    expect(stored).toHaveLength(day1.reviewed);
    const summary = RunSummary.parse(JSON.parse((await getObject('nightly/day1/summary.json')).toString('utf8')));
    expect(summary.reviews?.reviewed).toBe(day1.reviewed);
    // Imported again from S3: nothing changes.
    const again = await quietly(() => importReviewsCommand([day1.file], { run, labels: models.labels, json: true }));
    expect(again.import).toMatchObject({ added: 0, replaced: 0, unchanged: day1.reviewed });
    await expect(quietly(() => importReviewsCommand(['s3://runs/annotated/nope.json'], { run, labels: models.labels }))).rejects.toThrow(
      /^review file not found: s3:\/\/runs\/annotated\/nope\.json$/,
    );
  });

  it('calibrate --reviews s3://… certifies what calibrate --labels does on the same images', async () => {
    const calib = async (o: Partial<CalibrateOptions>, tag: string) => {
      const { file } = await quietly(() =>
        calibrateCommand({
          images,
          config,
          out: join(work.path, tag, 'calib.json'),
          cache: false,
          progress: false,
          json: true,
          ...rule,
          ...o,
        } as CalibrateOptions),
      );
      return file;
    };
    const fromReviews = await calib({ reviews: run }, 'from-reviews');
    expect(fromReviews.reviews).toMatchObject({ run, leftOut: expect.any(Number) });
    // The random slice's images with their true class, as a labels file.
    const used = (await getObject('nightly/day1/reviews.jsonl'))
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; reasons: string[] })
      .filter((r) => r.reasons.includes('random'));
    const csv = join(work.path, 'truth.csv');
    await writeFile(csv, `file,class_index\n${used.map((r) => `${r.key.slice(r.key.lastIndexOf('/') + 1)},${truth(r.key) === 'red' ? 0 : 3}`).join('\n')}\n`);
    const keep = new Set(used.map((r) => r.key));
    const listFile = join(images, 'random-slice.txt');
    await writeFile(listFile, `${[...keep].join('\n')}\n`);
    const fromLabels = await calib({ labels: csv, images: listFile }, 'from-labels');
    const chosen = (f: typeof fromReviews) => ({ metric: f.metric, threshold: f.threshold, guarantee: f.guarantee });
    expect(chosen(fromReviews)).toEqual(chosen(fromLabels));
    expect(fromReviews.guarantee).toMatchObject({ kind: 'accuracy-drop', level: 0.2, delta: 0.05 });
    certified = { metric: fromReviews.metric, threshold: fromReviews.threshold };
  }, 120_000);

  it('schedule add --calibration-from: the firing certifies from the latest reviewed run and records the reviews it used', async () => {
    const runtime = await startRuntime(await loadConfig({ file: config }), redis.url, ['little', 'big', 'merge', 'scheduler'], () => undefined);
    try {
      const printed: string[] = [];
      const template = await scheduleAddCommand(
        'learn',
        {
          every: 60_000,
          source: images,
          out: 's3://runs/nightly/{datetime}/',
          config,
          calibrationFrom: 's3://runs/nightly/',
          maxDrop: '0.2',
        },
        (t) => printed.push(t),
      );
      expect(template.calibrationFrom).toEqual({ location: 's3://runs/nightly/', target: { rule: 'guaranteed-drop', maxDrop: 0.2, delta: 0.05 } });
      expect(printed.join('')).toContain(
        "calibrated from the latest reviewed run at or under s3://runs/nightly/: accuracy drop ≤ 20% at δ 0.05; a refused firing keeps the schedule's own calibration: maxprob ≥ 0.9",
      );
      const merged = await mergedRun(runtime, 'learn');
      await scheduleRemoveCommand('learn', { config }, () => undefined);
      expect(merged).toBeDefined();
      const spec = (await runtime.tracker.spec(merged!))!;
      expect([spec.metric, spec.stages[0]!.threshold]).toEqual([certified.metric, certified.threshold]);
      const prefix = spec.out.slice('s3://runs/'.length);
      const summary = RunSummary.parse(JSON.parse((await getObject(`${prefix}summary.json`)).toString('utf8')));
      expect(summary.reviewCalibration).toEqual({
        from: 's3://runs/nightly/',
        run,
        runId: 'day1',
        reviewsSha256: createHash('sha256')
          .update(await getObject('nightly/day1/reviews.jsonl'))
          .digest('hex'),
        reviews: expect.any(Number),
        leftOut: expect.any(Number),
        latest: expect.any(String),
        target: { rule: 'guaranteed-drop', maxDrop: 0.2, delta: 0.05 },
        certified: true,
        metric: certified.metric,
        threshold: certified.threshold,
        promise: expect.any(String),
      });
      expect(summary.reviewCalibration!.reviews + summary.reviewCalibration!.leftOut).toBe(day1.reviewed);
      const status = (await readRunStatus(runtime.tracker, runtime.queues, merged!))!;
      expect(status.reviewCalibration).toEqual(summary.reviewCalibration);
      expect(formatRunStatus(status)).toContain(
        `\n  calibrated from ${summary.reviewCalibration!.reviews} reviews of run day1 at ${run} (reviews.jsonl sha256 ${summary.reviewCalibration!.reviewsSha256!.slice(0, 12)}): ${certified.metric} ≥ `,
      );
      expect([summary.metric, summary.threshold]).toEqual([certified.metric, certified.threshold]);
      // Labelled with that threshold: red stays with little, grey goes on to big.
      const rows = (await getObject(`${prefix}manifest.jsonl`))
        .toString('utf8')
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      expect(rows).toHaveLength(N);
      for (const r of rows) expect([r.key, r.stage]).toEqual([r.key, truth(r.key) === 'red' ? 'little' : 'big']);
    } finally {
      await runtime.close();
    }
  }, 120_000);

  it('too few reviews, or no reviewed run: the refusal is recorded and the firing keeps the schedule’s threshold', async () => {
    const few = await reviewedRun('few1', 's3://runs/few/day1/', N, 4);
    expect(few.reviewed).toBe(4);
    const runtime = await startRuntime(await loadConfig({ file: config }), redis.url, ['little', 'big', 'merge', 'scheduler'], () => undefined);
    try {
      await scheduleAddCommand(
        'strict',
        { every: 60_000, source: images, out: 's3://runs/strict/{datetime}/', config, calibrationFrom: 's3://runs/few/day1/', maxDrop: '0.05' },
        () => undefined,
      );
      await scheduleAddCommand(
        'blind',
        { every: 60_000, source: images, out: 's3://runs/blind/{datetime}/', config, calibrationFrom: 's3://runs/nothing-here/', targetAgreement: '0.9' },
        () => undefined,
      );
      const strict = await mergedRun(runtime, 'strict');
      const blind = await mergedRun(runtime, 'blind');
      await scheduleRemoveCommand('strict', { config }, () => undefined);
      await scheduleRemoveCommand('blind', { config }, () => undefined);
      for (const [runId, expected] of [
        [
          strict,
          {
            from: 's3://runs/few/day1/',
            run: 's3://runs/few/day1/',
            runId: 'few1',
            reviews: 4,
            leftOut: 0,
            certified: false,
            refusal: expect.stringMatching(/^guaranteed-drop rule refused: 2 calibration images cannot certify an accuracy drop ≤ 5\.0% at δ = 0\.05/),
            fallback: "the schedule's own calibration: maxprob ≥ 0.9",
          },
        ],
        [
          blind,
          {
            from: 's3://runs/nothing-here/',
            run: null,
            runId: null,
            reviewsSha256: null,
            reviews: 0,
            target: { rule: 'guaranteed', targetAgreement: 0.9, delta: 0.05 },
            certified: false,
            refusal: 'no reviewed run at or under s3://runs/nothing-here/ (no merged run there has a reviews.jsonl)',
            fallback: "the schedule's own calibration: maxprob ≥ 0.9",
          },
        ],
      ] as const) {
        expect(runId).toBeDefined();
        const spec = (await runtime.tracker.spec(runId!))!;
        const summary = RunSummary.parse(JSON.parse((await getObject(`${spec.out.slice('s3://runs/'.length)}summary.json`)).toString('utf8')));
        expect(summary.reviewCalibration).toMatchObject(expected);
        // `cascade status <run>` says the same.
        const status = (await readRunStatus(runtime.tracker, runtime.queues, runId!))!;
        expect(status.reviewCalibration).toEqual(summary.reviewCalibration);
        expect(formatRunStatus(status)).toContain(`  calibration from reviews REFUSED (`);
        expect(formatRunStatus(status)).toContain(`; kept the schedule's own calibration: maxprob ≥ 0.9`);
        expect(summary.reviewCalibration).not.toHaveProperty('threshold');
        expect([summary.metric, summary.threshold]).toEqual(['maxprob', 0.9]);
      }
    } finally {
      await runtime.close();
    }
  }, 120_000);

  it('usage errors: a target is needed, one only, and not with --warmup', async () => {
    const base = { every: 60_000, source: images, out: 's3://runs/x/{datetime}/', config, calibrationFrom: 's3://runs/nightly/' };
    await expect(scheduleAddCommand('bad', base, () => undefined)).rejects.toThrow(/--calibration-from needs exactly one target/);
    await expect(scheduleAddCommand('bad', { ...base, maxDrop: '0.1', targetAgreement: '0.9' }, () => undefined)).rejects.toThrow(/exactly one target/);
    await expect(scheduleAddCommand('bad', { ...base, maxDrop: '2' }, () => undefined)).rejects.toThrow(/--max-drop 2: expected a fraction/);
    await expect(scheduleAddCommand('bad', { ...base, targetAgreement: '0.9', warmup: '20' }, () => undefined)).rejects.toThrow(/drop --warmup/);
  });

  it('the candidates: merged runs of this prefix at or under the location, newest first; unmerged and sibling runs are not', async () => {
    const connection = connectRedis(redis.url);
    try {
      const tracker = new RunTracker(connection, uniquePrefix('candidates'));
      const runs = [
        ['c-old', 's3://runs/c/2026-01-01/', '2026-01-01T00:00:00.000Z', true],
        ['c-new', 's3://runs/c/2026-01-03/', '2026-01-03T00:00:00.000Z', true],
        ['c-mid', 's3://runs/c/2026-01-02/', '2026-01-02T00:00:00.000Z', true],
        ['c-running', 's3://runs/c/2026-01-04/', '2026-01-04T00:00:00.000Z', false],
        ['c-sibling', 's3://runs/c-other/2026-01-05/', '2026-01-05T00:00:00.000Z', true],
      ] as const;
      for (const [runId, out, createdAt, merged] of runs) {
        await tracker.create(fakeRunSpec(runId, { out, createdAt }));
        if (merged) await tracker.markMerged(runId, '{}');
      }
      expect(await reviewedRunCandidates(tracker, 's3://runs/c')).toEqual(['s3://runs/c/2026-01-03/', 's3://runs/c/2026-01-02/', 's3://runs/c/2026-01-01/']);
    } finally {
      connection.disconnect();
    }
  });
});
