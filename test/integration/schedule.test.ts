/**
 * Scheduled runs: BullMQ job schedulers on a real redis-server, a `scheduler` role that turns
 * a firing into a run, and that run labelled end to end into s3rver by in-process workers
 * (date patterns and firing times: unit/schedule-firings.test.ts).
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { scheduleAddCommand, scheduleListCommand, scheduleRemoveCommand } from '../../cli/commands/schedule.js';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { startRuntime, type Runtime } from '../../workers/cascade-runtime.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';

let config: string;
const N = 6;

withS3rverCredentials();
const work = withTempDir('schedule');
const redis = withRedis();
const s3 = withS3({ buckets: ['images-in', 'results'] });
const models = withModels(work);

beforeAll(async () => {
  for (let i = 0; i < N; i++) {
    const v = i % 2 ? 255 : 128;
    const body = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: i % 2 ? 0 : v, b: i % 2 ? 0 : v } } })
      .png()
      .toBuffer();
    await s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: `nightly/img-${i}.png`, Body: body }));
  }
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
      let merged: string | undefined;
      for (let i = 0; i < 200 && !merged; i++) {
        for (const id of await runtime.tracker.runIds()) if (id.startsWith('nightly-') && (await runtime.tracker.progress(id))?.mergedAt) merged = id;
        if (!merged) await sleep(100);
      }
      await scheduleRemoveCommand('nightly', { config }, () => undefined);
      expect(merged, logs.join('\n')).toBeDefined();
      const firedAt = Number(merged!.slice('nightly-'.length));
      const date = new Date(firedAt).toISOString().slice(0, 10);
      const spec = (await runtime.tracker.spec(merged!))!;
      expect(spec.out).toBe(`s3://results/nightly/${date}/`);
      const body = await (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: `nightly/${date}/manifest.jsonl` }))).Body!.transformToString();
      const rows = body
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      expect(rows).toHaveLength(N);
      expect(new Set(rows.map((r) => r.key)).size).toBe(N);
      expect(logs.some((l) => l.includes(`scheduler: nightly fired for ${new Date(firedAt).toISOString()}: run ${merged}`))).toBe(true);
      expect(await scheduleListCommand({ config }, () => undefined)).toEqual([]);
    } finally {
      await runtime.close();
    }
  });
});
