/**
 * Scheduled runs: BullMQ job schedulers on a real redis-server, a `scheduler` role that turns
 * a firing into a run, and that run labelled end to end into s3rver by in-process workers, with
 * a fixed threshold or self-calibrating (date patterns and firing times: unit/schedule-firings.test.ts).
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { scheduleAddCommand, scheduleListCommand, scheduleRemoveCommand } from '../../cli/commands/schedule.js';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { ThresholdDecision } from '../../pipeline/self-calibration.js';
import { chooseWarmup, inWarmup } from '../../pipeline/warmup-sample.js';
import { DECIDED_AT_WARMUP } from '../../pipeline/routing-resolver.js';
import { startRuntime, type Runtime } from '../../workers/cascade-runtime.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { writeSlowModels } from '../helpers/slow-models.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';

let config: string;
/** The same, with a big model slowed by dead matmuls: a self-calibrating firing's cascade then pays for itself at its measured costs. */
let selfcalConfig: string;
const N = 6;
/** The self-calibrating schedule's source: every sixth image grey (little unsure, never agreeing with big), the rest saturated colours. */
const SELFCAL = Array.from({ length: 36 }, (_, i) => {
  const grey = i % 6 === 5;
  const rgb = grey ? [128, 128, 128] : [0, 1, 2].map((c) => (c === i % 3 ? 255 : 0));
  return { key: `selfcal/img-${String(i).padStart(2, '0')}.png`, rgb, grey };
});

withS3rverCredentials();
const work = withTempDir('schedule');
const redis = withRedis();
const s3 = withS3({ buckets: ['images-in', 'results'] });
const models = withModels(work);

/** An 8×8 PNG of one colour into the images-in bucket. */
async function putImage(key: string, [r, g, b]: number[]): Promise<void> {
  const body = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: r!, g: g!, b: b! } } })
    .png()
    .toBuffer();
  await s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: key, Body: body }));
}

/** The run a firing of `schedule` started, once it is merged (undefined after 20 s). */
async function mergedRun(runtime: Runtime, schedule: string): Promise<string | undefined> {
  for (let i = 0; i < 200; i++) {
    for (const id of await runtime.tracker.runIds()) if (id.startsWith(`${schedule}-`) && (await runtime.tracker.progress(id))?.mergedAt) return id;
    await sleep(100);
  }
  return undefined;
}

/** The rows of the manifest at `key` in the results bucket. */
async function manifestAt(key: string): Promise<ManifestRow[]> {
  const body = await (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: key }))).Body!.transformToString();
  return body
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
}

beforeAll(async () => {
  for (let i = 0; i < N; i++) await putImage(`nightly/img-${i}.png`, i % 2 ? [255, 0, 0] : [128, 128, 128]);
  for (const img of SELFCAL) await putImage(img.key, img.rgb);
  const spec = (path: string) => colourSpec(path, models.labels);
  config = join(work.path, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify({
      little: spec(models.colourLittle),
      big: spec(models.colourBig),
      threshold: 0.9,
      batchSize: 4,
      redisUrl: redis.url,
      prefix: uniquePrefix('sched'),
      s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' },
    }),
  );
  const slow = await writeSlowModels(join(work.path, 'slow'), { k: 512, matmuls: 16 });
  selfcalConfig = join(work.path, 'cascade-selfcal.json');
  await writeFile(selfcalConfig, JSON.stringify({ ...JSON.parse(await readFile(config, 'utf8')), big: spec(slow.big) }));
});

describe('cascade schedule', () => {
  it('add with --cron, list, remove; bad names and unknown schedules are clear errors', async () => {
    const out: string[] = [];
    const write = (t: string) => out.push(t);
    await scheduleAddCommand('daily', { cron: '0 2 * * *', source: 's3://images-in/nightly/', out: 's3://results/daily/{date}/', config }, write);
    expect(out.join('')).toMatch(/schedule daily: cron '0 2 \* \* \*' \(UTC\)/);
    const [daily] = await scheduleListCommand({ config, json: true }, write);
    expect(daily).toMatchObject({ name: 'daily', cron: '0 2 * * *', every: null, source: 's3://images-in/nightly/', out: 's3://results/daily/{date}/' });
    const next = new Date(daily!.next!);
    expect([next.getUTCHours(), next.getUTCMinutes()]).toEqual([2, 0]);
    await scheduleRemoveCommand('daily', { config }, write);
    expect(await scheduleListCommand({ config }, write)).toEqual([]);
    await expect(scheduleRemoveCommand('daily', { config }, write)).rejects.toThrow(/no schedule named 'daily'/);
    await expect(scheduleAddCommand('bad name!', { every: 1000, source: 'x', out: 'y', config }, write)).rejects.toThrow(
      /schedule name 'bad name!': schedule names use letters/,
    );
    await expect(
      scheduleAddCommand('broken', { cron: 'not a cron', source: 's3://images-in/nightly/', out: 's3://results/x/', config }, write),
    ).rejects.toThrow(/schedule broken: BullMQ refused --cron 'not a cron'/);
  });

  it('a firing (--every) starts a run that the workers complete, with the date in its output path', async () => {
    const cfg = await loadConfig({ file: config });
    const logs: string[] = [];
    const runtime: Runtime = await startRuntime(cfg, redis.url, ['little', 'big', 'merge', 'scheduler'], (m) => logs.push(m));
    try {
      // An interval schedule fires at once, then every minute: one firing within this test, so
      // no two runs share the {date} output (a sub-daily schedule would use {datetime}).
      await scheduleAddCommand('nightly', { every: 60_000, source: 's3://images-in/nightly/', out: 's3://results/nightly/{date}/', config }, () => undefined);
      const merged = await mergedRun(runtime, 'nightly');
      await scheduleRemoveCommand('nightly', { config }, () => undefined);
      expect(merged, logs.join('\n')).toBeDefined();
      const firedAt = Number(merged!.slice('nightly-'.length));
      const date = new Date(firedAt).toISOString().slice(0, 10);
      const spec = (await runtime.tracker.spec(merged!))!;
      expect(spec.out).toBe(`s3://results/nightly/${date}/`);
      const rows = await manifestAt(`nightly/${date}/manifest.jsonl`);
      expect(rows).toHaveLength(N);
      expect(new Set(rows.map((r) => r.key)).size).toBe(N);
      expect(logs.some((l) => l.includes(`scheduler: nightly fired for ${new Date(firedAt).toISOString()}: run ${merged}`))).toBe(true);
      expect(await scheduleListCommand({ config }, () => undefined)).toEqual([]);
    } finally {
      await runtime.close();
    }
  });

  it('--target-agreement: each firing is a self-calibrating run; its warm-up is chosen by its run id, the threshold certified from it, summary.json records both', async () => {
    const cfg = await loadConfig({ file: selfcalConfig });
    const logs: string[] = [];
    const runtime: Runtime = await startRuntime(cfg, redis.url, ['little', 'big', 'merge', 'scheduler'], (m) => logs.push(m));
    const WARMUP = 30;
    try {
      const printed: string[] = [];
      // The config's threshold (0.9) is replaced by the one the warm-up certifies.
      const template = await scheduleAddCommand(
        'selfcal',
        {
          every: 60_000,
          source: 's3://images-in/selfcal/',
          out: 's3://results/selfcal/{datetime}/',
          config: selfcalConfig,
          targetAgreement: '0.75',
          warmup: String(WARMUP),
        },
        (t) => printed.push(t),
      );
      const selfCalibration = { targetAgreement: 0.75, delta: 0.05, warmup: { images: WARMUP } };
      expect(printed.join('')).toContain(`; self-calibrating: 75% at δ 0.05, warm-up ${WARMUP}`);
      expect(template.run.selfCalibration).toEqual(selfCalibration);
      expect(template.run.stages.map((s) => s.threshold)).toEqual([DECIDED_AT_WARMUP, null]);
      // The config names no metric: the template certifies rank, each firing building its reference from its own warm-up.
      expect(template.run.metric).toBe('rank');
      expect(template.run.rankReference).toBeUndefined();
      const listed: string[] = [];
      await scheduleListCommand({ config }, (t) => listed.push(t));
      expect(listed.join('')).toMatch(
        /^selfcal .* every 60000 ms .* s3:\/\/images-in\/selfcal\/ → s3:\/\/results\/selfcal\/\{datetime\}\/ {2}self-calibrating: 75% at δ 0\.05, warm-up 30\n$/,
      );
      expect(await scheduleListCommand({ config, json: true }, () => undefined)).toMatchObject([{ name: 'selfcal', selfCalibration }]);

      const merged = await mergedRun(runtime, 'selfcal');
      await scheduleRemoveCommand('selfcal', { config }, () => undefined);
      expect(merged, logs.join('\n')).toBeDefined();
      const spec = (await runtime.tracker.spec(merged!))!;
      expect(spec.selfCalibration).toEqual(selfCalibration);
      expect(spec.stages[0]!.threshold).toBe(DECIDED_AT_WARMUP);

      // The warm-up the submitter chose is the one the run id seeds.
      const keys = SELFCAL.map((i) => `s3://images-in/${i.key}`);
      const { cutoff } = await chooseWarmup(keys, merged!, { images: WARMUP }, 0.75);
      const warm = new Set(keys.filter((k) => inWarmup(merged!, k, cutoff)));
      expect(warm.size).toBe(WARMUP);
      expect(await runtime.tracker.warmup(merged!)).toEqual({ images: WARMUP, cutoff });

      // At least 24 of the 30 warm-up images are colours that little keeps and big agrees with: certified.
      const prefix = spec.out.slice('s3://results/'.length);
      const summaryBody = await (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: `${prefix}summary.json` }))).Body!.transformToString();
      const summary = RunSummary.parse(JSON.parse(summaryBody));
      expect(summary.selfCalibration).toMatchObject({
        targetAgreement: 0.75,
        delta: 0.05,
        warmupImages: WARMUP,
        decision: { certified: true, sample: WARMUP, metric: 'rank', rankReferenceSize: WARMUP },
      });
      const { rankReference, ...decision } = ThresholdDecision.parse(JSON.parse((await runtime.tracker.decision(merged!))!));
      expect(rankReference?.margin).toHaveLength(WARMUP);
      // Warm-up rows are big's; outside it, colours are kept by little at the certified threshold.
      // Greys go to big unless the warm-up accepted every image: the warm-up is drawn by the run id,
      // which holds the firing's time, and a draw with few greys (27/30 agreeing) certifies keeping all.
      const rows = await manifestAt(`${prefix}manifest.jsonl`);
      expect(rows.map((r) => r.key)).toEqual(keys);
      const decided = JSON.stringify(decision);
      // The slow big model costs several times the colour model, so the cascade pays for itself. Both
      // stages in this process fetch from the same in-process S3 server, which costs each image
      // more than either model; the warm-up hands the little stage's tensors on as the run does, so
      // that cost is priced once on each side. It used to be priced twice on the cascade's side,
      // and the little stage charged for the big stage's calls, which sent 2 of 55 firings big-only.
      expect(decision.route, decided).toBe('cascade');
      const greysToBig = decision.certified && decision.fractionAccepted < 1;
      for (const [i, row] of rows.entries()) {
        const big = warm.has(row.key) || (SELFCAL[i]!.grey && greysToBig);
        expect([row.key, row.stage], decided).toEqual([row.key, big ? 'big' : 'little']);
      }
    } finally {
      await runtime.close();
    }
  });
});
