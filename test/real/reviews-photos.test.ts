/**
 * Reviews on the 717 real photos of ../shared/assets (or $CASCADE_ASSETS): a shufflenet →
 * ensemble cascade with audits runs on them, its own review export (every photo, and a budget of
 * 200) is annotated by a reviewer simulated from labels/groundtruth.csv in Label Studio's JSON
 * export format, and imported. The report must equal a direct count of the cascade's answers
 * against the ground truth; the numbers are printed for docs/reviews.md. A photo whose true name
 * two classes share (crane, maillot) is imported only where the cascade answered one of them.
 * Then a schedule with --calibration-from that run fires once over the photos, its threshold
 * certified from the reviews (or refused), and its summary.json names the reviews it used.
 * Skipped, with a message, where the assets are absent.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportReviewCommand } from '../../cli/commands/export-review.js';
import { importReviewsCommand } from '../../cli/commands/import-reviews.js';
import { runCommand } from '../../cli/commands/run.js';
import { loadLabels } from '../../pipeline/models/labels.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { formatReviewReport } from '../../pipeline/reviews/review-report.js';
import { type ExportedTask, labelStudioJsonExport } from '../helpers/label-studio-reviewer.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { quietly } from '../helpers/quietly.js';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { scheduleAddCommand, scheduleRemoveCommand } from '../../cli/commands/schedule.js';
import { loadConfig } from '../../config/load-config.js';
import { RunSummary } from '../../pipeline/results/manifest.js';
import { startRuntime } from '../../workers/cascade-runtime.js';

const ASSETS = resolve(process.env.CASCADE_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets'));
const REPO = join(import.meta.dirname, '..', '..');
const LABELS = join(ASSETS, 'labels', 'imagenet_class_index.json');
const present = existsSync(join(ASSETS, 'images')) && existsSync(join(ASSETS, 'labels', 'groundtruth.csv')) && existsSync(LABELS);
if (!present) console.warn(`reviews real-photo test skipped: no assets at ${ASSETS} (set CASCADE_ASSETS)`);

describe.skipIf(!present)('reviews of a real run on the 717 photos, from a reviewer simulated from groundtruth.csv', () => {
  let dir: string;
  let redis: TestRedis;
  let out: string;
  let config: string;
  let rows: ManifestRow[];
  let names: string[];
  /** The true class of each photo, by file name. */
  let truth: Map<string, number>;
  const base = (key: string) => key.slice(key.lastIndexOf('/') + 1);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-reviews-real-'));
    redis = await startRedis();
    out = join(dir, 'out');
    config = join(dir, 'cascade.json');
    await writeFile(config, JSON.stringify({ redisUrl: redis.url, prefix: uniquePrefix('reviews-real'), threshold: 0.6, audit: { fraction: 0.25 } }));
    // The model specs find the models and the label file through CASCADE_ASSETS.
    vi.stubEnv('CASCADE_ASSETS', ASSETS);
    await quietly(() =>
      runCommand(join(ASSETS, 'images'), {
        out,
        config,
        little: join(REPO, 'config', 'models', 'shufflenet.yaml'),
        big: join(REPO, 'config', 'models', 'ensemble.yaml'),
        progress: false,
        json: true,
        runId: 'reviews-real',
      } as Parameters<typeof runCommand>[1]),
    );
    rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ManifestRow);
    names = await loadLabels(LABELS);
    truth = new Map(
      (await readFile(join(ASSETS, 'labels', 'groundtruth.csv'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(','))
        .map(([file, index]) => [file!, Number(index)]),
    );
  }, 600_000);

  afterAll(async () => {
    vi.unstubAllEnvs();
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Export within `budget`, annotate every task with the truth's name, import into a fresh review file of the run. */
  async function review(budget: number) {
    const tasksFile = join(dir, `tasks-${budget}.json`);
    await quietly(() =>
      exportReviewCommand({ run: out, format: 'label-studio', out: tasksFile, maxConfidence: 0.5, include: 'errors,disagreements,low-confidence', budget }),
    );
    const tasks = JSON.parse(await readFile(tasksFile, 'utf8')) as ExportedTask[];
    const annotated = join(dir, `annotated-${budget}.json`);
    await writeFile(annotated, JSON.stringify(labelStudioJsonExport(tasks, (t) => [{ annotator: 1, choice: names[truth.get(base(t.data.key!))!]! }])));
    await rm(join(out, 'reviews.jsonl'), { force: true });
    const warnings: string[] = [];
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      if (String(s).startsWith('warning: ')) warnings.push(String(s).trim());
      return true;
    });
    const std = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const report = await importReviewsCommand([annotated], { run: out, labels: LABELS, json: true });
      return { report, tasks, warnings };
    } finally {
      err.mockRestore();
      std.mockRestore();
    }
  }

  /** Photos whose true name two classes share, where the cascade answered neither: the import cannot tell which. */
  const ambiguous = (r: ManifestRow) => {
    const t = truth.get(base(r.key))!;
    const shared = names.map((n, i) => (n === names[t] ? i : -1)).filter((i) => i >= 0);
    return shared.length > 1 && !shared.includes(r.label ?? -1);
  };

  it('every photo reviewed: the report is the direct count, by stage, with Wilson intervals', { timeout: 120_000 }, async () => {
    const { report, tasks, warnings } = await review(rows.length);
    expect(tasks).toHaveLength(rows.length);
    const refused = rows.filter(ambiguous);
    expect(warnings).toEqual(refused.map((r) => expect.stringContaining(`"${names[truth.get(base(r.key))!]}" names classes`)));
    const counted = rows.filter((r) => r.error === null && !ambiguous(r));
    const correct = (rs: ManifestRow[]) => rs.filter((r) => r.label === truth.get(base(r.key))).length;
    expect(report.reviewed).toBe(rows.length - refused.length);
    expect(report.accuracy.overall).toMatchObject({ n: counted.length, hits: correct(counted) });
    for (const stage of ['little', 'big']) {
      const of = counted.filter((r) => r.stage === stage);
      expect(report.accuracy.byStage[stage]).toMatchObject({ n: of.length, hits: correct(of) });
    }
    console.log(`717 photos, every one reviewed (shufflenet → ensemble, threshold 0.6, audit 0.25):\n${formatReviewReport(report)}`);
  });

  it('a budget of 200: the random slice estimates the run without bias, the picks are reported apart', { timeout: 120_000 }, async () => {
    const { report, tasks } = await review(200);
    expect(report.reviewed).toBeLessThanOrEqual(200);
    // 100 random picks, less any whose truth names two classes the cascade answered neither of
    // (the import refuses those): which rows those are depends on the kernels numerics chose.
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const random = tasks.filter((t) => t.data.reason!.split(';').includes('random'));
    expect(random).toHaveLength(100);
    expect(report.samples.random.accuracy.overall.n).toBe(random.filter((t) => !ambiguous(byKey.get(t.data.key!)!)).length);
    expect(report.samples.random.accuracy.overall.n).toBeGreaterThanOrEqual(95);
    expect(report.samples.random.accuracy.overall.n + report.samples.selected.accuracy.overall.n).toBe(report.accuracy.overall.n);
    console.log(`717 photos, budget 200 (100 random + 100 likeliest wrong):\n${formatReviewReport(report)}`);
  });

  it('a scheduled run recalibrated from the reviews: its threshold certified from the random slice, the reviews it used recorded', {
    timeout: 600_000,
  }, async () => {
    const { report } = await review(rows.length);
    const reviewsFile = await readFile(join(out, 'reviews.jsonl'));
    const random = reviewsFile
      .toString('utf8')
      .trim()
      .split('\n')
      .filter((l) => (JSON.parse(l) as { reasons: string[] }).reasons.includes('random')).length;
    // The scheduler reads the reviewed photos itself: they must lie in its local roots.
    const schedulerConfig = join(dir, 'scheduler.json');
    await writeFile(schedulerConfig, JSON.stringify({ ...JSON.parse(await readFile(config, 'utf8')), sources: { localRoots: [join(ASSETS, 'images')] } }));
    const cfg = await loadConfig({
      file: schedulerConfig,
      overrides: { little: join(REPO, 'config', 'models', 'shufflenet.yaml'), big: join(REPO, 'config', 'models', 'ensemble.yaml') },
    });
    const runtime = await startRuntime(cfg, redis.url, ['little', 'big', 'merge', 'scheduler'], () => undefined);
    try {
      await quietly(() =>
        scheduleAddCommand(
          'photos',
          {
            every: 3_600_000,
            source: join(ASSETS, 'images'),
            out: join(dir, 'scheduled', '{datetime}'),
            config: schedulerConfig,
            little: join(REPO, 'config', 'models', 'shufflenet.yaml'),
            big: join(REPO, 'config', 'models', 'ensemble.yaml'),
            calibrationFrom: out,
            maxDrop: '0.05',
          } as Parameters<typeof scheduleAddCommand>[1],
          () => undefined,
        ),
      );
      let merged: string | undefined;
      for (let i = 0; i < 5000 && !merged; i++) {
        for (const id of await runtime.tracker.runIds()) if (id.startsWith('photos-') && (await runtime.tracker.progress(id))?.mergedAt) merged = id;
        if (!merged) await sleep(100);
      }
      await scheduleRemoveCommand('photos', { config: schedulerConfig }, () => undefined);
      expect(merged).toBeDefined();
      const spec = (await runtime.tracker.spec(merged!))!;
      const summary = RunSummary.parse(JSON.parse(await readFile(join(spec.out, 'summary.json'), 'utf8')));
      const r = summary.reviewCalibration!;
      expect(r).toMatchObject({
        from: out,
        run: out,
        runId: 'reviews-real',
        reviewsSha256: createHash('sha256').update(reviewsFile).digest('hex'),
        reviews: random,
        leftOut: report.reviewed - random,
        target: { rule: 'guaranteed-drop', maxDrop: 0.05, delta: 0.05 },
      });
      if (r.certified) expect([summary.metric, summary.threshold]).toEqual([r.metric, r.threshold]);
      else expect([summary.metric, summary.threshold, r.fallback]).toEqual(['maxprob', 0.6, "the schedule's own calibration: maxprob ≥ 0.6"]);
      const firing = (await readFile(join(spec.out, 'manifest.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as ManifestRow);
      const top1 = firing.filter((row) => row.label === truth.get(base(row.key))).length / firing.length;
      console.log(
        `scheduled run ${merged} on the 717 photos, calibrated from ${r.reviews} random-slice reviews of ${r.runId} (sha256 ${r.reviewsSha256!.slice(0, 12)}): ` +
          `${r.certified ? `${r.metric} ≥ ${r.threshold}, ${r.promise}` : `refused: ${r.refusal}; kept ${r.fallback}`}; ` +
          `${(100 * summary.fractionToBig).toFixed(1)}% to big, top-1 ${(100 * top1).toFixed(1)}% against groundtruth.csv`,
      );
    } finally {
      await runtime.close();
    }
  });
});
