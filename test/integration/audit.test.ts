/**
 * Audits on real redis-server: exactly-once audit counting in the run tracker, audit jobs under
 * redelivery, and whole runs with generated models where every little/big disagreement is known
 * in advance (the sample and the summary maths: unit/audit-sample.test.ts).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { formatSummary } from '../../cli/format-summary.js';
import { AuditPart, type AuditEntry } from '../../pipeline/audit/audit-part.js';
import { isAudited } from '../../pipeline/audit/audit-sample.js';
import { wilsonInterval } from '../../pipeline/calibration/wilson.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { AUDIT_JOB_NAME, JOB_OPTIONS, auditJobId, type RunSpec } from '../../queue/jobs.js';
import { StageWorker } from '../../workers/stage-worker.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { colourSpec, COLOURS, writeColourImages } from '../helpers/colour-fixture.js';
import { uniquePrefix } from '../helpers/redis.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { fakePin, localFetch, pinTestModel, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { calibFile } from '../helpers/calib-file.js';

const work = withTempDir('audit');
const redis = withRedis();
const models = withModels(work);
let images: string;
let conn: Redis;

beforeAll(async () => {
  images = join(work.path, 'images');
  await writeColourImages(images);
  conn = connectRedis(redis.url);
});

afterAll(() => {
  conn?.disconnect();
});

const name = (key: string) => key.slice(key.lastIndexOf('/') + 1);

describe('audit counting in the run tracker', () => {
  const spec = (runId: string): RunSpec => ({
    runId,
    source: '/in',
    out: '/out',
    metric: 'maxprob',
    batchSize: 4,
    ...RUN_DEFAULTS,
    stages: [
      { name: 'little', model: fakePin('l.onnx'), gmacsPerImage: 0.1, threshold: 0.5 },
      { name: 'big', model: fakePin('b.onnx'), gmacsPerImage: 1, threshold: null },
    ],
    audit: { fraction: 0.5, seed: '' },
    createdAt: new Date(0).toISOString(),
  });
  const counts = (images: number, accepted: number, forwarded: number, errors: number) => ({ images, accepted, forwarded, errors });

  it('waits for every promised audit, counts each audit once, and never as a final row', async () => {
    const t = new RunTracker(conn, 'aud');
    await t.create(spec('r1'));
    await t.finishListing('r1', 4, 1);
    // All 4 images are final at little, but 3 audits were promised: not complete yet.
    const part = { id: 'b0s0', stage: 0, final: 4, counts: counts(4, 4, 0, 0), audits: 3 };
    expect(await t.finishPart('r1', part)).toBe(false);
    expect(await t.finishPart('r1', part)).toBe(false);
    expect(await t.auditProgress('r1')).toEqual({ expected: 3, done: 0, agreeing: 0 });
    // The audit completes the run; a redelivered audit job counts nothing more but still
    // reports completion until the merge is queued (so a crash in between heals on retry).
    expect(await t.finishAudit('r1', { id: 'b0audit', audited: 3, agreeing: 2 })).toBe(true);
    expect(await t.finishAudit('r1', { id: 'b0audit', audited: 3, agreeing: 2 })).toBe(true);
    await t.markMergeQueued('r1');
    expect(await t.finishAudit('r1', { id: 'b0audit', audited: 3, agreeing: 2 })).toBe(false);
    const p = (await t.progress('r1'))!;
    expect(p.final).toBe(4);
    expect(p.audit).toEqual({ expected: 3, done: 3, agreeing: 2 });
    expect(await t.auditProgress('unknown')).toBeNull();
  });

  it('a run without audits completes on its final rows alone', async () => {
    const t = new RunTracker(conn, 'aud');
    await t.create(spec('r2'));
    await t.finishListing('r2', 2, 1);
    expect(await t.finishPart('r2', { id: 'b0s0', stage: 0, final: 2, counts: counts(2, 2, 0, 0) })).toBe(true);
    expect((await t.progress('r2'))!.audit).toEqual({ expected: 0, done: 0, agreeing: 0 });
  });
});

describe('audit jobs under redelivery', () => {
  it('a first-stage batch delivered twice promises and queues its audits once; an audit job delivered twice counts once', async () => {
    const prefix = uniquePrefix('redeliver');
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    const out = join(work.path, 'out-redeliver');
    const cache = testModelCache();
    const [little, big] = await Promise.all([
      pinTestModel('little', colourSpec(models.colourLittle, models.labels), cache),
      pinTestModel('big', colourSpec(models.colourBig, models.labels), cache),
    ]);
    const worker = (stage: string) =>
      new StageWorker({
        connection,
        prefix,
        stage,
        models: cache,
        concurrency: 1,
        fetch: localFetch,
        fetchConcurrency: 2,
        openOutput: (o) => new LocalStore(o),
        tracker,
        queues,
        log: () => {},
      });
    const [w0, w1] = [worker('little'), worker('big')];
    // Only `process` is exercised (the call BullMQ makes): stop the consumers taking jobs themselves.
    await Promise.all([w0.worker.close(), w1.worker.close()]);
    try {
      const spec: RunSpec = {
        runId: 'redeliver-1',
        source: images,
        out,
        metric: 'maxprob',
        batchSize: 4,
        ...RUN_DEFAULTS,
        limits: { maxBytes: 1e6, maxPixels: 1e6 },
        stages: [
          { name: 'little', ...little, threshold: 0.3 },
          { name: 'big', ...big, threshold: null },
        ],
        audit: { fraction: 1, seed: '' },
        createdAt: new Date().toISOString(),
      };
      await tracker.create(spec);
      await tracker.finishListing(spec.runId, 4, 1);
      // red (agree), black (agree: "other"), light grey 160 (little says a colour, big "other"), grey 64 (forwarded).
      const names = ['red-0.png', 'grey-0.png', 'grey-160.png', 'grey-64.png'];
      const stageJob = {
        name: 'batch',
        data: { runId: spec.runId, batch: 0, stage: 0, items: names.map((n, pos) => ({ ref: join(images, n), pos })) },
        attemptsMade: 0,
        opts: { ...JOB_OPTIONS },
      } as unknown as Job;
      await w0.process(stageJob);
      await w0.process(stageJob);
      expect(await tracker.auditProgress(spec.runId)).toEqual({ expected: 3, done: 0, agreeing: 0 });
      const queued = await queues.stage('big').getJob(auditJobId(spec.runId, 0));
      expect(queued?.name).toBe(AUDIT_JOB_NAME);
      expect(queued?.data.items.map((i: { ref: string }) => name(i.ref))).toEqual(['red-0.png', 'grey-0.png', 'grey-160.png']);
      expect(await queues.stage('big').getJobCounts('waiting')).toEqual({ waiting: 2 }); // the audit and the forwarded grey

      const auditJob = { name: AUDIT_JOB_NAME, data: queued!.data, attemptsMade: 0, opts: { ...JOB_OPTIONS } } as unknown as Job;
      await w1.process(auditJob);
      const first = await readFile(join(out, 'audit', '00000000.json'), 'utf8');
      await w1.process(auditJob);
      expect(await readFile(join(out, 'audit', '00000000.json'), 'utf8')).toBe(first);
      expect(await tracker.auditProgress(spec.runId)).toEqual({ expected: 3, done: 3, agreeing: 2 });
      // Audits are not final rows: the run still waits for the forwarded grey.
      expect((await tracker.progress(spec.runId))!.final).toBe(3);
    } finally {
      await Promise.allSettled([w0.close(), w1.close()]);
      await cache.close();
      await queues.close();
      connection.disconnect();
    }
  });
});

describe('audited runs', () => {
  async function writeConfig(audit: Record<string, unknown>): Promise<{ file: string; prefix: string }> {
    const file = join(work.path, `config-${Math.random().toString(36).slice(2)}.json`);
    const prefix = uniquePrefix('audited');
    const config = {
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      // At 0.3 the little model also keeps black (p(other) 0.71, right) and the three light
      // greys (p ≈ 0.32-0.33 for a colour, wrong: the big model says "other"); greys 64 and
      // 96 (p ≈ 0.25, 0.297) go to big.
      threshold: 0.3,
      batchSize: 4,
      redisUrl: redis.url,
      prefix,
      audit,
    };
    await writeFile(file, JSON.stringify(config));
    return { file, prefix };
  }

  async function auditEntries(out: string): Promise<AuditEntry[]> {
    const names = (await readdir(join(out, 'audit'))).sort();
    const parts = await Promise.all(names.map(async (n) => AuditPart.parse(JSON.parse(await readFile(join(out, 'audit', n), 'utf8')))));
    return parts.flatMap((p) => p.entries);
  }

  const readManifest = async (out: string) =>
    (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));

  it('audits every accepted image at fraction 1, reports agreement and drift, and leaves the manifest alone', async () => {
    const { file, prefix } = await writeConfig({ fraction: 1, expectAgreement: 0.99 });
    const out = join(work.path, 'out-all');
    const summary = await runCommand(images, { out, config: file, progress: false, json: true, runId: 'audit-all' });
    const accepted = COLOURS.length + 4;
    expect(summary.stages.map((s) => [s.name, s.images, s.accepted, s.forwarded])).toEqual([
      ['little', 20, accepted, 2],
      // Audits are not stage work: the big stage's counts are the 2 forwarded images only.
      ['big', 2, 2, 0],
    ]);
    const w = wilsonInterval(13, 16);
    const gmacs = 16 * summary.stages[1]!.gmacsPerImage;
    expect(summary.audit).toEqual({
      fraction: 1,
      sampled: 16,
      agreeing: 13,
      agreement: 13 / 16,
      wilson: { low: w.low, high: w.high },
      promised: 0.99,
      drift: true,
      gmacs,
    });
    expect(formatSummary(summary)).toContain(
      `audit: 13/16 agree (81.3%, 95% CI ${(w.low * 100).toFixed(1)}%–${(w.high * 100).toFixed(1)}%), below the promised 99.0%: DRIFT`,
    );

    const entries = await auditEntries(out);
    expect(entries).toHaveLength(16);
    const disagreeing = entries
      .filter((e) => !e.agree)
      .map((e) => e.key.slice(images.length + 1))
      .sort();
    expect(disagreeing).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    for (const e of entries.filter((x) => !x.agree)) expect(e.big?.labelName).toBe('other');

    const rows = await readManifest(out);
    expect(rows).toHaveLength(20);
    // The little answer stays final even where the audit disagreed.
    for (const name of disagreeing) expect(rows.find((r) => r.key.endsWith(name))!.stage).toBe('little');

    const t = new RunTracker(conn, prefix);
    expect(await t.auditProgress('audit-all')).toEqual({ expected: 16, done: 16, agreeing: 13 });
  });

  it('audits exactly the deterministic sample at fraction 0.5', async () => {
    const { file } = await writeConfig({ fraction: 0.5, seed: 's1' });
    const out = join(work.path, 'out-half');
    const summary = await runCommand(images, { out, config: file, progress: false, json: true, runId: 'audit-half' });
    const rows = await readManifest(out);
    const expected = rows
      .filter((r) => r.stage === 'little' && isAudited('audit-half', 's1', r.key, 0.5))
      .map((r) => r.key)
      .sort();
    const entries = await auditEntries(out);
    expect(entries.map((e) => e.key).sort()).toEqual(expected);
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(16);
    expect(summary.audit).toMatchObject({ fraction: 0.5, sampled: expected.length, drift: false });
    expect(summary.audit).not.toHaveProperty('promised');
  });

  it('takes the promise from --calibration (calib.json expected.agreement) and plots the audited point on its curve', async () => {
    const calib = calibFile({
      little: { name: 'colour-little', path: models.colourLittle, gmacsPerImage: 1e-8 },
      big: { name: 'colour-big', path: models.colourBig, gmacsPerImage: 1e-8 },
      threshold: 0.3,
      expected: { images: 50, fractionToBig: 0.1, gmacsPerImage: 1e-8, saved: 0.2, agreement: 0.99, agreementInterval: { low: 0.95, high: 1 } },
    });
    await writeFile(join(work.path, 'calib.json'), JSON.stringify(calib));
    await writeFile(
      join(work.path, 'calib.curve.json'),
      JSON.stringify(
        [0.2, 0.3, 0.5].map((t) => ({
          metric: 'maxprob',
          threshold: t,
          fractionToBig: t,
          gmacsPerImage: 1e-8 * (1 + t),
          saved: 0,
          accepted: 10,
          agreement: 1 - t / 10,
          cascadeAccuracy: null,
        })),
      ),
    );
    const { file } = await writeConfig({ fraction: 1 });
    const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    delete config.threshold;
    await writeFile(file, JSON.stringify(config));
    const out = join(work.path, 'out-calibrated');
    const summary = await runCommand(images, {
      out,
      config: file,
      calibration: join(work.path, 'calib.json'),
      progress: false,
      json: true,
      runId: 'audit-calibrated',
    });
    expect(summary.threshold).toBe(0.3);
    expect(summary.audit).toMatchObject({ sampled: 16, agreeing: 13, promised: 0.99, drift: true });
    expect(summary.plots?.calibrationSvg).toBe('calibration.svg');
    expect(await readFile(join(out, 'calibration.svg'), 'utf8')).toContain('this run (audited agreement)');
  });

  it('a run without audit config writes no audit parts and no audit summary', async () => {
    const file = join(work.path, 'config-plain.json');
    await writeFile(
      file,
      JSON.stringify({
        little: colourSpec(models.colourLittle, models.labels),
        big: colourSpec(models.colourBig, models.labels),
        threshold: 0.3,
        batchSize: 4,
        redisUrl: redis.url,
        prefix: uniquePrefix('plain'),
      }),
    );
    const out = join(work.path, 'out-plain');
    const summary = await runCommand(images, { out, config: file, progress: false, json: true });
    expect(summary).not.toHaveProperty('audit');
    await expect(readdir(join(out, 'audit'))).rejects.toThrow(/ENOENT/);
  });
});
