/**
 * Human reviews back into a real audited run (real redis-server, generated colour models with
 * known disagreements), from a directory and from S3 (s3rver): `export review --budget`, a
 * simulated reviewer answering in Label Studio's JSON, JSON-MIN and CSV exports and a Ground
 * Truth manifest, `import reviews` (report = a direct count, idempotent, hostile files), and
 * the final manifest and the Ground Truth / imagefolder exports with human labels winning.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportFinalCommand } from '../../cli/commands/export-final.js';
import { exportGroundTruthCommand, exportImagefolderCommand } from '../../cli/commands/export-formats.js';
import { exportReviewCommand } from '../../cli/commands/export-review.js';
import { type CalibrateOptions, calibrateCommand } from '../../cli/commands/calibrate.js';
import { importReviewsCommand, type ImportReviewsOptions } from '../../cli/commands/import-reviews.js';
import { runCommand } from '../../cli/commands/run.js';
import { statusCommand } from '../../cli/commands/status.js';
import type { RunStatus } from '../../cli/format-status.js';
import { type ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { FinalRow } from '../../pipeline/reviews/final-manifest.js';
import { ReviewRow } from '../../pipeline/reviews/review-row.js';
import { auditedColourConfig, writeColourImages } from '../helpers/colour-fixture.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { type ExportedTask, labelStudioCsv, labelStudioJsonExport, labelStudioJsonMin, type SimulatedAnnotation } from '../helpers/label-studio-reviewer.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { writeTestModels } from '../helpers/test-models.js';
import { quietly } from '../helpers/quietly.js';

let dir: string;
let images: string;
let out: string;
let redis: TestRedis;
let s3: TestS3;
let labels: string;
let config: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-reviews-'));
  images = join(dir, 'images');
  out = join(dir, 'out');
  const models = await writeTestModels(join(dir, 'models'));
  labels = models.labels;
  [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['runs'] }), writeColourImages(images)]);
  config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify(auditedColourConfig(models, redis.url, uniquePrefix('reviews'))));
  await runCommand(images, { out, config, progress: false, json: true, runId: 'reviews-1' });
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  process.env.CASCADE_S3_ENDPOINT = s3.endpoint;
});

afterAll(async () => {
  delete process.env.CASCADE_S3_ENDPOINT;
  await Promise.allSettled([redis?.stop(), s3?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

const name = (key: string) => key.slice(key.lastIndexOf('/') + 1);
/** What a careful human says each test image shows. */
const truth = (key: string) => /^(red|green|blue)-/.exec(name(key))?.[1] ?? 'other';

/** A fresh copy of the run's output, so each test imports into a run without reviews. */
async function runCopy(tag: string): Promise<string> {
  const copy = join(dir, `run-${tag}`);
  await cp(out, copy, { recursive: true });
  return copy;
}

async function manifestRows(run = out): Promise<ManifestRow[]> {
  return (await readFile(join(run, 'manifest.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ManifestRow);
}

/** The review export of the run within a budget, as tasks. */
async function exportTasks(budget: number, run = out): Promise<ExportedTask[]> {
  const file = join(dir, `tasks-${budget}-${Math.random()}.json`);
  await quietly(() =>
    exportReviewCommand({ run, format: 'label-studio', out: file, maxConfidence: 0.5, include: 'errors,disagreements,low-confidence', budget }),
  );
  return JSON.parse(await readFile(file, 'utf8')) as ExportedTask[];
}

/** Import with warnings collected. */
async function importReviews(files: string[], o: Partial<ImportReviewsOptions> & { run: string }) {
  const lines: string[] = [];
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    lines.push(String(s));
    return true;
  });
  const std = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const result = await importReviewsCommand(files, { labels, json: true, ...o });
    return { result, warnings: lines.filter((l) => l.startsWith('warning: ')).map((l) => l.trim()) };
  } finally {
    err.mockRestore();
    std.mockRestore();
  }
}

const writeJson = async (file: string, value: unknown) => {
  await writeFile(file, JSON.stringify(value, null, 2));
  return file;
};

/** Every task answered once, by annotator 7, with the truth. */
const honest = (t: ExportedTask): SimulatedAnnotation[] => [{ annotator: 7, choice: truth(t.data.key!) }];

describe('cascade export review --budget', () => {
  it('a random slice, then disagreements, then the lowest confidence, K in all, each task naming its run', async () => {
    const rows = await manifestRows();
    const tasks = await exportTasks(10);
    expect(tasks).toHaveLength(10);
    expect(tasks.every((t) => t.data.run === 'reviews-1')).toBe(true);
    const random = tasks.filter((t) => t.data.reason === 'random');
    const targeted = tasks.filter((t) => t.data.reason !== 'random');
    expect(random).toHaveLength(5);
    // Disagreements come first among the targeted; then the lowest confidence of the rest.
    const disagreements = ['grey-128.png', 'grey-160.png', 'grey-192.png'];
    const randomNames = new Set(random.map((t) => name(t.data.key!)));
    const expectedDisagreements = disagreements.filter((n) => !randomNames.has(n));
    expect(targeted.filter((t) => t.data.reason === 'disagreements').map((t) => name(t.data.key!))).toEqual(expectedDisagreements);
    const low = targeted.filter((t) => t.data.reason === 'low-confidence').map((t) => t.data.key!);
    const rest = rows
      .filter((r) => r.error === null && !randomNames.has(name(r.key)) && !disagreements.includes(name(r.key)))
      .sort((a, b) => a.confidence! - b.confidence!)
      .slice(0, 5 - expectedDisagreements.length)
      .map((r) => r.key);
    expect(new Set(low)).toEqual(new Set(rest));
    // The same slice on every export: drawn by a hash of (run id, key).
    expect((await exportTasks(10)).map((t) => t.data.key)).toEqual(tasks.map((t) => t.data.key));
    // A budget above the labelled rows reviews every one, the rest of it goes to the errors.
    const all = await exportTasks(100);
    expect(all).toHaveLength(rows.length);
    expect(all.filter((t) => t.data.reason === 'errors').map((t) => name(t.data.key!))).toEqual(['corrupt.jpg', 'empty.png']);
  });
});

describe('cascade import reviews', () => {
  it('Label Studio JSON: stored as reviews.jsonl, the report is a direct count, and it lands in summary.json', async () => {
    const run = await runCopy('json');
    const tasks = await exportTasks(12, run);
    // One task never annotated: counted, not imported.
    const file = await writeJson(
      join(dir, 'ls.json'),
      labelStudioJsonExport(tasks, (t, i) => (i === 0 ? [] : honest(t))),
    );
    const { result, warnings } = await importReviews([file], { run });
    expect(warnings).toEqual([]);
    expect(result.import).toMatchObject({ tasks: 12, reviews: 11, added: 11, unannotated: 1 });
    const stored = (await readFile(join(run, 'reviews.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ReviewRow.parse(JSON.parse(l)));
    const rows = await manifestRows(run);
    const reviewed = tasks.slice(1).map((t) => t.data.key!);
    expect(stored.map((r) => r.key)).toEqual(rows.map((r) => r.key).filter((k) => reviewed.includes(k)));
    for (const r of stored) expect([r.labelName, r.reviewer, r.source.format]).toEqual([truth(r.key), '7', 'label-studio-json']);
    // The report against a direct count of the cascade's answers and the truth.
    const labelled = rows.filter((r) => reviewed.includes(r.key) && r.error === null);
    const correct = (rs: ManifestRow[]) => rs.filter((r) => r.labelName === truth(r.key)).length;
    expect(result.reviewed).toBe(11);
    expect(result.accuracy.overall).toMatchObject({ n: labelled.length, hits: correct(labelled) });
    for (const stage of ['little', 'big']) {
      const of = labelled.filter((r) => r.stage === stage);
      expect(result.accuracy.byStage[stage]).toMatchObject({ n: of.length, hits: correct(of) });
    }
    const isRandom = (r: ManifestRow) => tasks.find((t) => t.data.key === r.key)!.data.reason === 'random';
    expect(result.samples.random.accuracy.overall).toMatchObject({ n: labelled.filter(isRandom).length, hits: correct(labelled.filter(isRandom)) });
    expect(result.samples.selected.accuracy.overall.n).toBe(labelled.filter((r) => !isRandom(r)).length);
    const o = result.accuracy.overall;
    expect(o.low).toBeLessThanOrEqual(o.rate);
    expect(o.high).toBeGreaterThanOrEqual(o.rate);
    // The disagreeing greys: little said a colour, big and the human "other".
    const lb = result.agreement.littleBig;
    const audited = labelled.filter((r) => r.stage === 'little');
    expect(lb.disagreement.n).toBe(audited.length);
    expect(lb.bigRight).toBe(audited.filter((r) => ['grey-128.png', 'grey-160.png', 'grey-192.png'].includes(name(r.key))).length);
    expect([lb.littleRight, lb.neitherRight]).toEqual([0, 0]);
    const summary = RunSummary.parse(JSON.parse(await readFile(join(run, 'summary.json'), 'utf8')));
    const { import: _import, ...report } = result;
    expect(summary.reviews).toEqual(report);
  });

  it('importing the same file twice changes nothing', async () => {
    const run = await runCopy('twice');
    const file = await writeJson(join(dir, 'twice.json'), labelStudioJsonExport(await exportTasks(8, run), honest));
    await importReviews([file], { run });
    const before = await Promise.all(['reviews.jsonl', 'summary.json'].map((f) => readFile(join(run, f), 'utf8')));
    const { result } = await importReviews([file], { run });
    expect(result.import).toMatchObject({ added: 0, replaced: 0, unchanged: 8 });
    expect(await Promise.all(['reviews.jsonl', 'summary.json'].map((f) => readFile(join(run, f), 'utf8')))).toEqual(before);
  });

  it('JSON-MIN and CSV give the same labels; of two annotators the latest wins and the disagreement is reported', async () => {
    const tasks = await exportTasks(12);
    // Task 2 is answered "red" first, then corrected by another annotator; task 3 has a skipped annotation before a real one.
    const annotated = labelStudioJsonExport(tasks, (t, i) =>
      i === 1
        ? [
            { annotator: 7, choice: 'red', minute: 1 },
            { annotator: 8, choice: truth(t.data.key!), minute: 5 },
          ]
        : i === 2
          ? [
              { annotator: 7, choice: null, cancelled: true, minute: 9 },
              { annotator: 8, choice: truth(t.data.key!), minute: 2 },
            ]
          : honest(t),
    );
    const labelsOf = async (run: string) =>
      (await readFile(join(run, 'reviews.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as ReviewRow)
        .map((r) => [r.key, r.labelName, r.annotations, r.annotatorsDisagree]);
    const jsonRun = await runCopy('min-json');
    await importReviews([await writeJson(join(dir, 'full.json'), annotated)], { run: jsonRun });
    const min = labelStudioJsonMin(annotated);
    // Reversed: the import must pick the latest by time, not by position.
    const minRun = await runCopy('min');
    const { result, warnings } = await importReviews([await writeJson(join(dir, 'min.json'), [...min].reverse())], { run: minRun });
    expect(result.import.reviews).toBe(12);
    expect(warnings).toEqual([`warning: ${join(dir, 'min.json')}: task 2: annotators disagree (8: ${truth(tasks[1]!.data.key!)}, 7: red); the latest is kept`]);
    expect(result.agreement.annotators).toEqual({ severalAnnotations: 1, disagreeing: 1 });
    const csvRun = await runCopy('csv');
    const csvFile = join(dir, 'export.csv');
    await writeFile(csvFile, labelStudioCsv(min));
    await importReviews([csvFile], { run: csvRun });
    const expected = await labelsOf(jsonRun);
    expect(expected.find((r) => r[0] === tasks[1]!.data.key)).toEqual([tasks[1]!.data.key, truth(tasks[1]!.data.key!), 2, true]);
    expect(await labelsOf(minRun)).toEqual(expected);
    expect(await labelsOf(csvRun)).toEqual(expected);
  });

  it('hostile files: per-task warnings for what cannot be used, one-line errors for files that cannot be read', async () => {
    const run = await runCopy('hostile');
    const tasks = await exportTasks(6, run);
    const [a, b, c, d, e, f] = tasks as [ExportedTask, ExportedTask, ExportedTask, ExportedTask, ExportedTask, ExportedTask];
    const foreign = { ...a, data: { ...a.data, run: 'another-run' } };
    const stranger = { ...b, data: { ...b.data, key: '/elsewhere/x.png', image: '/elsewhere/x.png' } };
    const exported = labelStudioJsonExport([a, foreign, stranger, c, d, e, f], (t, i) =>
      i === 3 ? [{ annotator: 7, choice: 'purple' }] : i === 4 ? [{ annotator: 7, choice: null, cancelled: true }] : honest(t),
    );
    // Two choices in one annotation, and a task that is not one.
    (exported[5]!.annotations[0]!.result as Array<{ value: { choices: string[] } }>)[0]!.value.choices = ['red', 'blue'];
    const hostile: unknown[] = [...exported, { id: 99, data: 'not an object' }];
    const file = await writeJson(join(dir, 'hostile.json'), hostile);
    const { result, warnings } = await importReviews([file], { run });
    const at = `warning: ${file}: `;
    expect(warnings).toEqual([
      `${at}task 6: annotation ${(exported[5]!.annotations[0] as { id: number }).id} chose 2 classes (red, blue); one is needed: not used`,
      expect.stringMatching(new RegExp(`^${at}task 99: not a Label Studio task \\(data: `)),
      `${at}task 2: a task of run another-run, not of reviews-1: not imported`,
      `${at}task 3: /elsewhere/x.png is not an image of run reviews-1 (a task from another run?): not imported`,
      `${at}task 4: unknown label "purple": not a class of the run's label file: not imported`,
      `${at}task 5: its 1 annotation(s) were cancelled or skipped: not imported`,
    ]);
    // Only the two good tasks (1 and 7) were imported.
    expect(result.import.reviews).toBe(2);

    // Files that cannot be read: one line, nothing written.
    const before = await readFile(join(run, 'reviews.jsonl'), 'utf8');
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '[{"id": 1, "data": {');
    const notReviews = join(dir, 'notes.txt');
    await writeFile(notReviews, 'hello');
    for (const [files, message] of [
      [[bad], `${bad}: not JSON: `],
      [[notReviews], `${notReviews}: not a review file cascade reads`],
      [[join(dir, 'missing.json')], `review file not found: ${join(dir, 'missing.json')}`],
      [[file, bad], `${bad}: not JSON: `],
    ] as Array<[string[], string]>) {
      await expect(importReviews(files, { run })).rejects.toThrow(message);
    }
    await expect(importReviews([file], { run: join(dir, 'nowhere') })).rejects.toThrow(/no summary\.json in .*nowhere/);
    await expect(importReviews([file], { run, labels: join(dir, 'models', 'nope.txt') })).rejects.toThrow('label file not found');
    const otherLabels = join(dir, 'other-labels.txt');
    await writeFile(otherLabels, 'cyan\nmagenta\nyellow\nblack\n');
    await expect(importReviews([file], { run, labels: otherLabels })).rejects.toThrow(
      /which .*other-labels\.txt calls "(cyan|magenta|yellow|black)": is it the run's label file\?/,
    );
    expect(await readFile(join(run, 'reviews.jsonl'), 'utf8')).toBe(before);
  });

  it('the CLI: a malformed file is one line and exit 2, a good import prints the --json report', async () => {
    const run = await runCopy('cli');
    const bad = join(dir, 'cli-bad.csv');
    await writeFile(bad, 'id,choice\n"1,red\n');
    const failed = spawnCascade(['import', 'reviews', bad, '--run', run, '--labels', labels]);
    expect((await failed.exited).code).toBe(2);
    expect(failed.output()).toBe(`cascade: ${bad}: CSV: a quoted field is never closed\n`);
    const good = await writeJson(join(dir, 'cli.json'), labelStudioJsonExport(await exportTasks(4, run), honest));
    const ok = spawnCascade(['import', 'reviews', good, '--run', run, '--labels', labels, '--json']);
    expect((await ok.exited).code).toBe(0);
    const report = JSON.parse(
      ok
        .output()
        .split('\n')
        .find((l) => l.startsWith('{'))!,
    ) as { reviewed: number; intervals: string };
    expect([report.reviewed, report.intervals]).toEqual([4, '95% Wilson score']);
    const budget = spawnCascade(['export', 'review', '--run', run, '--budget', '0']);
    expect((await budget.exited).code).toBe(2);
    expect(budget.output()).toMatch(/budget must be a whole number of at least 1/);
    const final = spawnCascade(['export', 'final', '--run', run]);
    expect((await final.exited).code).toBe(0);
    expect(
      final
        .output()
        .split('\n')
        .filter((l) => l.includes('"label_source":"human"')),
    ).toHaveLength(4);
  });

  it('a Ground Truth output manifest of human labels imports; the cascade’s own export (human-annotated: no) does not', async () => {
    const run = await runCopy('gt');
    const own = join(dir, 'own.manifest');
    await quietly(() => exportGroundTruthCommand({ run, out: own, labelAttribute: 'colour', allowLocalRefs: true }));
    const lines = (await readFile(own, 'utf8')).trim().split('\n');
    const { result, warnings } = await importReviews([own], { run });
    expect(result.import.reviews).toBe(0);
    expect(warnings).toHaveLength(lines.length);
    expect(warnings[0]).toBe(`warning: ${own}: line 1: colour-metadata says human-annotated "no": a machine label, not a review`);
    // The same lines as a human labelling job would write them, with the truth.
    const human = join(dir, 'human.manifest');
    await writeFile(
      human,
      lines
        .map((l) => {
          const o = JSON.parse(l) as Record<string, unknown> & { 'source-ref': string; 'colour-metadata': Record<string, unknown> };
          const cls = truth(o['source-ref']);
          return JSON.stringify({
            ...o,
            colour: ['red', 'green', 'blue', 'other'].indexOf(cls),
            'colour-metadata': { ...o['colour-metadata'], 'class-name': cls, 'human-annotated': 'yes' },
          });
        })
        .join('\n'),
    );
    const imported = await importReviews([human], { run });
    expect(imported.warnings).toEqual([]);
    expect(imported.result.import.reviews).toBe(lines.length);
    expect(imported.result.accuracy.overall.hits).toBe((await manifestRows(run)).filter((r) => r.error === null && r.labelName === truth(r.key)).length);
  });
});

describe('the final manifest', () => {
  it('human labels win in export final, ground-truth and imagefolder --with-reviews; a run in S3 works the same', async () => {
    // The run in S3, reviewed there.
    for (const sub of ['', 'audit']) {
      for (const entry of await readdir(join(out, sub), { withFileTypes: true })) {
        if (!entry.isFile()) continue;
        await s3.client.send(
          new PutObjectCommand({ Bucket: 'runs', Key: `r1/${sub ? `${sub}/` : ''}${entry.name}`, Body: await readFile(join(out, sub, entry.name)) }),
        );
      }
    }
    const run = 's3://runs/r1/';
    const tasks = await exportTasks(100, run);
    const file = await writeJson(join(dir, 's3.json'), labelStudioJsonExport(tasks, honest));
    const { result } = await importReviews([file], { run });
    expect(result.reviewed).toBe(tasks.length);
    // Every image reviewed: the accuracy is exact.
    const rows = await manifestRows();
    expect(result.coverage).toBe(1);
    expect(result.errorRowsLabelled).toBe(2);
    expect(result.accuracy.overall.hits).toBe(rows.filter((r) => r.error === null && r.labelName === truth(r.key)).length);

    const finalFile = join(dir, 'final.jsonl');
    const counts = await quietly(() => exportFinalCommand({ run, out: finalFile }));
    const final = (await readFile(finalFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => FinalRow.parse(JSON.parse(l)));
    expect(final.map((r) => r.key)).toEqual(rows.map((r) => r.key));
    expect(final.every((r) => r.label_source === 'human' && r.label_name === truth(r.key))).toBe(true);
    expect(counts).toEqual({ rows: rows.length, human: rows.length, cascade: 0, errors: 0 });
    const grey = final.find((r) => name(r.key) === 'grey-160.png')!;
    expect([grey.label_name, grey.model_stage, grey.reviewer]).toEqual(['other', 'little', '7']);
    expect(rows.find((r) => r.key === grey.key)!.labelName).toBe('red');

    // A partly reviewed local run: the rest keeps its stage.
    const local = await runCopy('final');
    const some = await exportTasks(4, local);
    await importReviews([await writeJson(join(dir, 'some.json'), labelStudioJsonExport(some, honest))], { run: local });
    await quietly(() => exportFinalCommand({ run: local, out: finalFile }));
    const partial = (await readFile(finalFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => FinalRow.parse(JSON.parse(l)));
    const reviewedKeys = new Set(some.map((t) => t.data.key));
    for (const r of partial) {
      const row = rows.find((m) => m.key === r.key)!;
      if (reviewedKeys.has(r.key)) expect(r.label_source).toBe('human');
      else expect([r.label_source, r.label]).toEqual([row.error ? null : row.stage, row.label]);
    }
    const gt = join(dir, 'final.manifest');
    await quietly(() => exportGroundTruthCommand({ run: local, out: gt, labelAttribute: 'label', withReviews: true, allowLocalRefs: true }));
    const gtRows = (await readFile(gt, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { 'source-ref': string; label: number; 'label-metadata': { 'human-annotated': string; 'class-name': string } });
    for (const g of gtRows) {
      expect(g['label-metadata']['human-annotated']).toBe(reviewedKeys.has(g['source-ref']) ? 'yes' : 'no');
      if (reviewedKeys.has(g['source-ref'])) expect(g['label-metadata']['class-name']).toBe(truth(g['source-ref']));
    }
    const meta = join(dir, 'metadata.jsonl');
    await quietly(() => exportImagefolderCommand({ run: local, root: images, out: meta, withReviews: true }));
    const folderRows = (await readFile(meta, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { file_name: string; stage: string; label_name: string });
    // Reviewed error rows have a label now, so they are in the dataset too.
    expect(
      folderRows
        .filter((r) => r.stage === 'human')
        .map((r) => r.file_name)
        .sort(),
    ).toEqual(some.map((t) => name(t.data.key!)).sort());
  });
});

describe('cascade status', () => {
  it("shows a finished run's reviews report, as in its summary.json", async () => {
    const file = await writeJson(join(dir, 'status.json'), labelStudioJsonExport(await exportTasks(6), honest));
    await importReviews([file], { run: out });
    const summary = RunSummary.parse(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')));
    let text = '';
    const status = await statusCommand('reviews-1', { config, json: true }, (t) => {
      text = t;
    });
    expect((status as RunStatus).reviews).toEqual(summary.reviews);
    expect(JSON.parse(text).reviews.reviewed).toBe(6);
    await statusCommand('reviews-1', { config }, (t) => {
      text = t;
    });
    expect(text).toMatch(/\n {2}reviewed 6 images .*\n {4}accuracy, all reviews: /);
  });
});

describe('cascade calibrate --reviews', () => {
  /**
   * calib.json of a calibration (or its refusal), without what differs by input route and time:
   * paths, skipped images, createdAt, the reviews used (checked here), and the cost verdict (its
   * timings are measured afresh by each calibration here, cache off).
   */
  async function calibration(o: Partial<CalibrateOptions>, tag: string): Promise<unknown> {
    try {
      const { file } = await quietly(() =>
        calibrateCommand({ images, config, out: join(dir, tag, 'calib.json'), cache: false, progress: false, json: true, ...o } as CalibrateOptions),
      );
      const { skippedImages: _skipped, createdAt: _created, reviews, cost: _cost, ...rest } = file as unknown as Record<string, unknown>;
      if (o.reviews) expect(reviews).toMatchObject({ run: o.reviews, leftOut: o.allReviews ? 0 : 2, latest: expect.any(String) });
      else expect(reviews).toBeUndefined();
      return JSON.parse(JSON.stringify(rest).replaceAll(join(dir, tag), '<out>'));
    } catch (err) {
      return { refused: (err as Error).message };
    }
  }

  it('reproduces calibrate --labels on the same images, for accuracy and agreement targets alike; picked reviews are no sample', async () => {
    const run = await runCopy('calibrate');
    await importReviews([await writeJson(join(dir, 'calibrate.json'), labelStudioJsonExport(await exportTasks(100, run), honest))], { run });
    const rows = (await manifestRows(run)).filter((r) => r.error === null);
    const csv = join(dir, 'truth.csv');
    await writeFile(csv, `file,class_index\n${rows.map((r) => `${name(r.key)},${['red', 'green', 'blue', 'other'].indexOf(truth(r.key))}`).join('\n')}\n`);
    for (const rule of [
      { rule: 'guaranteed-drop', maxDrop: 0.2, delta: 0.2 },
      { rule: 'guaranteed', targetAgreement: 0.8, delta: 0.2 },
      { rule: 'tinysaver', maxDrop: 0.2 },
    ] as Array<Partial<CalibrateOptions>>) {
      const fromReviews = await calibration({ ...rule, reviews: run }, `r-${rule.rule}`);
      expect(fromReviews).toEqual(await calibration({ ...rule, labels: csv }, `l-${rule.rule}`));
    }
    // Only the picked reviews (no random slice): refused, unless asked for.
    const picked = await runCopy('calibrate-picked');
    const tasks = (await exportTasks(100, picked)).map((t) => ({ ...t, data: { ...t.data, reason: 'low-confidence' } }));
    await importReviews([await writeJson(join(dir, 'picked.json'), labelStudioJsonExport(tasks, honest))], { run: picked });
    await expect(calibration({ reviews: picked }, 'p')).resolves.toEqual({
      refused: expect.stringMatching(/is of a random slice, the only fair calibration sample/),
    });
    expect(await calibration({ reviews: picked, allReviews: true, rule: 'tinysaver', maxDrop: 0.2 }, 'p2')).toEqual(
      await calibration({ rule: 'tinysaver', maxDrop: 0.2, labels: csv }, 'l-p2'),
    );
  });
});
