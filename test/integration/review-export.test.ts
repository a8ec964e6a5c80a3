/**
 * Exports of a real audited run (real redis-server, generated models with known
 * disagreements) from a directory and from S3 (s3rver): the review set as Label Studio tasks and
 * CSV, every labelled image as a Ground Truth output manifest and as imagefolder metadata, and the
 * Label Studio labeling config, each parsed back; each written to s3:// (s3rver) as well, and
 * Ground Truth's refusal of local source-refs.
 *
 * Human review export: a real audited run (real redis-server, generated models with known
 * disagreements), exported as Label Studio tasks and CSV from a directory and from S3 (s3rver).
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportReviewCommand } from '../../cli/commands/export-review.js';
import { runCommand } from '../../cli/commands/run.js';
import { buildProgram } from '../../cli/main.js';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import {
  exportGroundTruthCommand,
  exportImagefolderCommand,
  exportLabelStudioConfigCommand,
  LocalSourceRefError,
  OutsideRootError,
} from '../../cli/commands/export-formats.js';
import { GroundTruthMetadata, groundTruthRowSchema } from '../../pipeline/results/ground-truth-export.js';
import { ImagefolderRow } from '../../pipeline/results/imagefolder-export.js';
import { type ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { imageRef, parseReasons } from '../../pipeline/results/review-export.js';
import { listSource } from '../../producers/list-source.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { auditedColourConfig, colourSpec, writeColourImages } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { startS3, type TestS3 } from '../helpers/s3.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let images: string;
let out: string;
let redis: TestRedis;
let s3: TestS3;
let labelsFile: string;
let specFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-review-'));
  images = join(dir, 'images');
  out = join(dir, 'out');
  const models = await writeTestModels(join(dir, 'models'));
  labelsFile = models.labels;
  specFile = join(dir, 'big-spec.json');
  await writeFile(specFile, JSON.stringify(colourSpec(models.colourBig, models.labels)));
  [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['runs'] }), writeColourImages(images)]);
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify(auditedColourConfig(models, redis.url, uniquePrefix('review'))));
  await runCommand(images, { out, config, progress: false, json: true, runId: 'review-1' });
  // The same run results in S3, to export from there too.
  for (const sub of ['', 'audit']) {
    for (const name of await readdir(join(out, sub), { withFileTypes: true })) {
      if (!name.isFile()) continue;
      await s3.client.send(
        new PutObjectCommand({ Bucket: 'runs', Key: `r1/${sub ? `${sub}/` : ''}${name.name}`, Body: await readFile(join(out, sub, name.name)) }),
      );
    }
  }
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

/** Parse our CSV (quoted fields may hold commas and doubled quotes). */
function parseCsv(text: string): string[][] {
  return text
    .trim()
    .split('\n')
    .map((line) =>
      [...line.matchAll(/("(?:[^"]|"")*"|[^,]*)(,|$)/g)].slice(0, -1).map((m) => (m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!)),
    );
}

describe('cascade export review', () => {
  it('writes Label Studio tasks for errors, disagreements and low confidence', async () => {
    const file = join(dir, 'tasks.json');
    const n = await exportReviewCommand({ run: out, format: 'label-studio', out: file, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' });
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: Record<string, string>; predictions: Array<Record<string, unknown>> }>;
    expect(n).toBe(6);
    expect(tasks.map((t) => [name(t.data.key!), t.data.reason])).toEqual([
      ['corrupt.jpg', 'errors'],
      ['empty.png', 'errors'],
      ['grey-0.png', 'low-confidence'],
      ['grey-128.png', 'disagreements;low-confidence'],
      ['grey-160.png', 'disagreements;low-confidence'],
      ['grey-192.png', 'disagreements;low-confidence'],
    ]);
    const [corrupt, , black, grey128] = tasks as [(typeof tasks)[0], unknown, (typeof tasks)[0], (typeof tasks)[0]];
    expect(corrupt.predictions).toEqual([]);
    expect(corrupt.data.error).toMatch(/^decode: /);
    expect(black.data.image).toBe(join(images, 'grey-0.png'));
    expect(black.predictions).toEqual([
      {
        model_version: 'little',
        score: expect.closeTo(Math.exp(2) / (3 + Math.exp(2)), 5),
        result: [{ from_name: 'choice', to_name: 'image', type: 'choices', value: { choices: ['other'] } }],
      },
    ]);
    // A disagreement carries both answers: the cascade's (little) and the audit's (big).
    expect(grey128.predictions.map((p) => [p.model_version, (p.result as Array<{ value: { choices: string[] } }>)[0]!.value.choices])).toEqual([
      ['little', ['red']],
      ['big (audit)', ['other']],
    ]);
  });

  it('filters by --include and --max-confidence', async () => {
    const only = async (include: string, maxConfidence = 0.5) => {
      const file = join(dir, `sel-${include}-${maxConfidence}.json`);
      await exportReviewCommand({ run: out, format: 'label-studio', out: file, maxConfidence, include });
      return (JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { key: string } }>).map((t) => name(t.data.key));
    };
    expect(await only('errors')).toEqual(['corrupt.jpg', 'empty.png']);
    expect(await only('disagreements')).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(await only('low-confidence', 0.5)).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(await only('low-confidence', 0.9)).toEqual(['grey-0.png', 'grey-128.png', 'grey-160.png', 'grey-192.png', 'grey-96.png']);
    expect(await only('low-confidence', 0)).toEqual([]);
  });

  it('writes CSV with one quoted, parseable line per image', async () => {
    const file = join(dir, 'review.csv');
    await exportReviewCommand({ run: out, format: 'csv', out: file, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' });
    const [header, ...lines] = parseCsv(await readFile(file, 'utf8'));
    expect(header).toEqual(['key', 'reason', 'label', 'labelName', 'confidence', 'stage', 'error', 'auditLabelName']);
    expect(lines).toHaveLength(6);
    const byName = new Map(lines.map((l) => [name(l[0]!), l]));
    expect(byName.get('grey-160.png')!.slice(1)).toEqual(['disagreements;low-confidence', '0', 'red', expect.stringMatching(/^0\.32/), 'little', '', 'other']);
    expect(byName.get('empty.png')!.slice(1, 7)).toEqual(['errors', '', '', '', '', expect.stringMatching(/^decode: /)]);
  });

  it('reads the run from S3 and keeps s3:// keys', async () => {
    const file = join(dir, 's3.json');
    await exportReviewCommand({ run: 's3://runs/r1/', format: 'label-studio', out: file, maxConfidence: 0.75, include: 'disagreements' });
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { image: string }; predictions: unknown[] }>;
    expect(tasks.map((t) => name(t.data.image))).toEqual(['grey-128.png', 'grey-160.png', 'grey-192.png']);
    expect(tasks.every((t) => t.predictions.length === 2)).toBe(true);
  });

  it('is registered as `cascade export review` and maps local files under --local-files-root', async () => {
    const file = join(dir, 'cli.json');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await buildProgram().parseAsync([
        'node',
        'cascade',
        'export',
        'review',
        '--run',
        out,
        '--out',
        file,
        '--include',
        'low-confidence',
        '--max-confidence',
        '0.75',
        '--local-files-root',
        dir,
      ]);
    } finally {
      stderr.mockRestore();
    }
    const tasks = JSON.parse(await readFile(file, 'utf8')) as Array<{ data: { image: string } }>;
    expect(tasks[0]!.data.image).toBe(`/data/local-files/?d=${relative(dir, join(images, 'grey-0.png'))}`);
  });

  it('names a bad reason and a missing run clearly', async () => {
    expect(() => parseReasons('errors,typos')).toThrow('--include: unknown reason "typos" (use errors, disagreements, low-confidence)');
    await expect(exportReviewCommand({ run: join(dir, 'nowhere'), format: 'csv', maxConfidence: 0.5, include: 'errors' })).rejects.toThrow(
      /no manifest\.jsonl or manifest\/\*\.parquet in .*nowhere.*is the run finished/,
    );
  });

  it('a missing run on S3 (no bucket) is the same clear error, disagreements asked for or not', async () => {
    for (const include of ['errors', 'disagreements']) {
      await expect(exportReviewCommand({ run: 's3://no-such-bucket/r1/', format: 'csv', maxConfidence: 0.5, include })).rejects.toThrow(
        /no manifest\.jsonl or manifest\/\*\.parquet in s3:\/\/no-such-bucket\/r1\/.*is the run finished/,
      );
    }
  });

  it('streams the manifest, naming the line of a row that is not one (blank lines counted)', async () => {
    const store = new LocalStore(join(dir, 'bad-manifest'));
    const good = JSON.stringify({ key: '/x/a.png', label: 0, labelName: 'red', confidence: 0.9, stage: 'little', top5: [], error: null });
    await store.put('manifest.jsonl', `${good}\n\n${good.replace('0.9', '"high"')}\n`);
    const rows: string[] = [];
    const read = async () => {
      for await (const row of await openManifest(store)) rows.push(row.key);
    };
    await expect(read()).rejects.toThrow(/^manifest\.jsonl line 3 is not a manifest row: confidence: /);
    expect(rows).toEqual(['/x/a.png']);
  });

  it('image references: s3 kept, local mapped only under the root, special characters encoded', () => {
    expect(imageRef('s3://b/k.jpg', '/data')).toBe('s3://b/k.jpg');
    expect(imageRef('/data/a b/c#1.jpg', '/data/')).toBe('/data/local-files/?d=a%20b/c%231.jpg');
    expect(imageRef('/elsewhere/x.jpg', '/data')).toBe('/elsewhere/x.jpg');
    expect(imageRef('/data/x.jpg')).toBe('/data/x.jpg');
  });
});

/** The run's manifest rows, as merged. */
async function manifestRows(): Promise<ManifestRow[]> {
  const rows: ManifestRow[] = [];
  for await (const row of await openManifest(new LocalStore(out))) rows.push(row);
  return rows;
}

/** Parse a JSON Lines file strictly: every line, none blank, each through `schema`. */
async function parseJsonl<T>(file: string, schema: { parse(v: unknown): T }): Promise<T[]> {
  const text = await readFile(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => schema.parse(JSON.parse(line)));
}

describe('cascade export ground-truth', () => {
  it('writes one strict output-manifest row per labelled image (local refs allowed), error rows left out, and reads back to the manifest', async () => {
    const file = join(dir, 'output.manifest');
    const counts = await exportGroundTruthCommand({ run: out, out: file, labelAttribute: 'colour', allowLocalRefs: true });
    const rows = await manifestRows();
    const labelled = rows.filter((r) => r.error === null);
    expect(counts).toEqual({ rows: labelled.length, errors: 2 });
    expect(labelled.length).toBe(rows.length - 2);
    const summary = RunSummary.parse(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')));
    const parsed = await parseJsonl(file, groundTruthRowSchema('colour'));
    expect(parsed).toEqual(
      labelled.map((r) => ({
        'source-ref': r.key,
        colour: r.label,
        'colour-metadata': {
          'class-name': r.labelName,
          confidence: r.confidence,
          type: 'groundtruth/image-classification',
          'job-name': 'cascade-review-1',
          'human-annotated': 'no',
          'creation-date': `${summary.finishedAt.slice(0, 23)}000`,
        },
      })),
    );
    // The output manifest is also a source: its source-refs are the labelled images, in order.
    const listed: string[] = [];
    for await (const ref of listSource(file, { extensions: [] })) listed.push(ref);
    expect(listed).toEqual(labelled.map((r) => r.key));
  });

  it('reads the run from S3, takes --job-name, and refuses attribute names Ground Truth refuses', async () => {
    const file = join(dir, 's3-output.manifest');
    await exportGroundTruthCommand({ run: 's3://runs/r1/', out: file, labelAttribute: 'label', jobName: 'colours-2026', allowLocalRefs: true });
    const parsed = await parseJsonl(file, groundTruthRowSchema('label'));
    expect(parsed).toHaveLength((await manifestRows()).length - 2);
    expect(new Set(parsed.map((p) => GroundTruthMetadata.parse(p['label-metadata'])['job-name']))).toEqual(new Set(['colours-2026']));
    await expect(exportGroundTruthCommand({ run: out, labelAttribute: 'class-metadata' })).rejects.toThrow(
      '--label-attribute "class-metadata": must not contain "-metadata"',
    );
    await expect(exportGroundTruthCommand({ run: out, labelAttribute: 'label', jobName: 'no_underscores' })).rejects.toThrow(
      /^--job-name "no_underscores": letters/,
    );
    await expect(exportGroundTruthCommand({ run: join(dir, 'nowhere'), labelAttribute: 'label' })).rejects.toThrow(/no summary\.json in .*nowhere/);
  });
});

describe('cascade export imagefolder', () => {
  it('file_name is relative to --root and names the image; error rows are left out', async () => {
    const file = join(dir, 'metadata.jsonl');
    const counts = await exportImagefolderCommand({ run: out, root: images, out: file });
    const labelled = (await manifestRows()).filter((r) => r.error === null);
    expect(counts).toEqual({ rows: labelled.length, errors: 2, outside: 0 });
    const parsed = await parseJsonl(file, ImagefolderRow);
    expect(parsed).toEqual(
      labelled.map((r) => ({ file_name: name(r.key), label: r.label, label_name: r.labelName, confidence: r.confidence, stage: r.stage })),
    );
    for (const p of parsed) expect(join(images, p.file_name)).toBe(labelled[parsed.indexOf(p)]!.key);
    // A root above the images keeps their folder in file_name.
    await exportImagefolderCommand({ run: out, root: dir, out: file });
    expect((await parseJsonl(file, ImagefolderRow)).map((p) => p.file_name)).toEqual(labelled.map((r) => `images/${name(r.key)}`));
  });

  it('an image outside --root fails the export and leaves --out as it was, unless --skip-outside leaves it out', async () => {
    const file = join(dir, 'outside.jsonl');
    await writeFile(file, 'an earlier export\n');
    const elsewhere = join(dir, 'models');
    await expect(exportImagefolderCommand({ run: out, root: elsewhere, out: file })).rejects.toThrow(
      new RegExp(`^${join(images, 'blue-0.png')} is not under --root ${elsewhere}/, so it has no file_name relative to it; .*--skip-outside`),
    );
    expect(await readFile(file, 'utf8')).toBe('an earlier export\n');
    expect((await readdir(dir)).filter((f) => f.includes('.part'))).toEqual([]);
    const counts = await exportImagefolderCommand({ run: out, root: elsewhere, out: file, skipOutside: true });
    expect(counts).toEqual({ rows: 0, errors: 2, outside: (await manifestRows()).length - 2 });
    expect(await readFile(file, 'utf8')).toBe('');
  });
});

describe('cascade export label-studio-config', () => {
  it('one Choice per class of the run’s label file, which every review prediction names', async () => {
    const file = join(dir, 'config.xml');
    expect(await exportLabelStudioConfigCommand({ labels: labelsFile, run: out, out: file })).toBe(4);
    const xml = await readFile(file, 'utf8');
    expect(XMLValidator.validate(xml)).toBe(true);
    const view = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (n) => n === 'Choice' }).parse(xml).View;
    const values = (view.Choices.Choice as Array<{ value: string }>).map((c) => c.value);
    expect(values).toEqual(['red', 'green', 'blue', 'other']);
    // The names the review tasks use are the control's: from_name/to_name and every predicted choice.
    expect([view.Image.name, view.Image.value, view.Choices.name, view.Choices.toName]).toEqual(['image', '$image', 'choice', 'image']);
    // Its own review export, so the test passes alone and in any order.
    const tasksFile = join(dir, 'config-tasks.json');
    await exportReviewCommand({ run: out, format: 'label-studio', out: tasksFile, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' });
    const tasks = JSON.parse(await readFile(tasksFile, 'utf8')) as Array<{
      predictions: Array<{ result: Array<{ from_name: string; to_name: string; value: { choices: string[] } }> }>;
    }>;
    const predicted = tasks.flatMap((t) => t.predictions.flatMap((p) => p.result));
    expect(predicted.length).toBeGreaterThan(0);
    for (const r of predicted) {
      expect([r.from_name, r.to_name]).toEqual([view.Choices.name, view.Image.name]);
      expect(values).toEqual(expect.arrayContaining(r.value.choices));
    }
    // The same from the model spec's labels:.
    await exportLabelStudioConfigCommand({ model: specFile, out: join(dir, 'config2.xml') });
    expect(await readFile(join(dir, 'config2.xml'), 'utf8')).toBe(xml);
  });

  it('a label file that is not the run’s, or no label file at all, is a clear error', async () => {
    const other = join(dir, 'other-labels.txt');
    await writeFile(other, 'cyan\nmagenta\nyellow\nblack\n');
    await expect(exportLabelStudioConfigCommand({ labels: other, run: out, out: join(dir, 'x.xml') })).rejects.toThrow(
      new RegExp(`is labelled "(red|green|blue|other)", which ${other} does not name: is it the run's label file\\?`),
    );
    await expect(exportLabelStudioConfigCommand({ out: join(dir, 'x.xml') })).rejects.toThrow(
      'give the label file with --labels or the model spec with --model',
    );
    await expect(exportLabelStudioConfigCommand({ labels: join(dir, 'none.txt') })).rejects.toThrow(`label file not found: ${join(dir, 'none.txt')}`);
  });

  it('is registered as `cascade export label-studio-config`, beside ground-truth and imagefolder', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const args of [
        ['label-studio-config', '--labels', labelsFile, '--out', join(dir, 'cli.xml')],
        ['ground-truth', '--run', out, '--out', join(dir, 'cli.manifest'), '--allow-local-refs'],
        ['imagefolder', '--run', out, '--root', images, '--out', join(dir, 'cli.jsonl')],
      ])
        await buildProgram().parseAsync(['node', 'cascade', 'export', ...args]);
    } finally {
      stderr.mockRestore();
    }
    expect(await readFile(join(dir, 'cli.xml'), 'utf8')).toContain('<Choice value="other"/>');
    expect((await parseJsonl(join(dir, 'cli.manifest'), groundTruthRowSchema('label'))).length).toBe((await manifestRows()).length - 2);
    expect((await parseJsonl(join(dir, 'cli.jsonl'), ImagefolderRow))[0]!.file_name).toBe('blue-0.png');
  });
});

describe('exports to s3:// (and Ground Truth refs that S3 can serve)', () => {
  /** The object's body and Content-Type, or undefined when it does not exist. */
  async function s3Object(key: string): Promise<{ body: string; type: string | undefined } | undefined> {
    try {
      const got = await s3.client.send(new GetObjectCommand({ Bucket: 'runs', Key: key }));
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: 'runs', Key: key }));
      return { body: await got.Body!.transformToString(), type: head.ContentType };
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey' || (err as { name?: string }).name === 'NotFound') return undefined;
      throw err;
    }
  }

  it('every export format writes to s3:// what it writes locally, with its Content-Type', async () => {
    const local = (f: string) => join(dir, `to-s3-${f}`);
    const quiet = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const review = { run: out, maxConfidence: 0.75, include: 'errors,disagreements,low-confidence' };
      const cases: Array<[string, string, (o: string) => Promise<unknown>]> = [
        ['tasks.json', 'application/json', (o) => exportReviewCommand({ ...review, format: 'label-studio', out: o })],
        ['review.csv', 'text/csv', (o) => exportReviewCommand({ ...review, format: 'csv', out: o })],
        ['output.manifest', 'application/x-ndjson', (o) => exportGroundTruthCommand({ run: out, out: o, labelAttribute: 'label', allowLocalRefs: true })],
        ['metadata.jsonl', 'application/x-ndjson', (o) => exportImagefolderCommand({ run: out, root: images, out: o })],
        ['config.xml', 'application/xml', (o) => exportLabelStudioConfigCommand({ labels: labelsFile, out: o })],
      ];
      for (const [file, type, run] of cases) {
        await run(local(file));
        await run(`s3://runs/exports/${file}`);
        const written = await s3Object(`exports/${file}`);
        expect(written, file).toEqual({ body: await readFile(local(file), 'utf8'), type });
        expect(written!.body.length, file).toBeGreaterThan(0);
      }
    } finally {
      quiet.mockRestore();
    }
  });

  it('an export that fails leaves no object; a prefix is not an object', async () => {
    await expect(exportImagefolderCommand({ run: out, root: join(dir, 'models'), out: 's3://runs/exports/failed.jsonl' })).rejects.toBeInstanceOf(
      OutsideRootError,
    );
    expect(await s3Object('exports/failed.jsonl')).toBeUndefined();
    await expect(exportImagefolderCommand({ run: out, root: images, out: 's3://runs/exports/' })).rejects.toThrow(
      '--out s3://runs/exports/ names a prefix, not an object: end it with a file name',
    );
  });

  it('ground-truth refuses local source-refs with one line and exit code 2, and writes nothing; --allow-local-refs writes them', async () => {
    const file = join(dir, 'refused.manifest');
    await expect(exportGroundTruthCommand({ run: out, out: file, labelAttribute: 'label' })).rejects.toBeInstanceOf(LocalSourceRefError);
    expect(existsSync(file)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.includes('.part'))).toEqual([]);
    // The built CLI, as a user runs it.
    const cli = spawnCascade(['export', 'ground-truth', '--run', out, '--out', file]);
    expect((await cli.exited).code).toBe(2);
    expect(cli.output()).toBe(
      `cascade: ${join(images, 'blue-0.png')} is not an s3:// URL, and Ground Truth reads source-ref only from S3; label images under s3://, or pass --allow-local-refs to write local paths anyway\n`,
    );
    expect(existsSync(file)).toBe(false);
    const allowed = spawnCascade(['export', 'ground-truth', '--run', out, '--out', file, '--allow-local-refs']);
    expect((await allowed.exited).code).toBe(0);
    const refs = (await parseJsonl(file, groundTruthRowSchema('label'))).map((r) => r['source-ref']);
    expect(refs).toEqual((await manifestRows()).filter((r) => r.error === null).map((r) => r.key));
  });

  it('a run of s3:// images exports to s3:// without the flag, every source-ref an s3:// URL', async () => {
    // The audited run's results with its keys moved to S3, as a run over s3:// images writes them:
    // the export reads only summary.json and manifest.jsonl.
    const rows = await manifestRows();
    const moved = rows.map((r) => ({ ...r, key: `s3://images/colours/${name(r.key)}` }));
    await s3.client.send(new PutObjectCommand({ Bucket: 'runs', Key: 'r2/manifest.jsonl', Body: moved.map((r) => `${JSON.stringify(r)}\n`).join('') }));
    await s3.client.send(new PutObjectCommand({ Bucket: 'runs', Key: 'r2/summary.json', Body: await readFile(join(out, 'summary.json')) }));
    const quiet = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await exportGroundTruthCommand({ run: 's3://runs/r2/', out: 's3://runs/r2/output.manifest', labelAttribute: 'label' });
    } finally {
      quiet.mockRestore();
    }
    const written = await s3Object('r2/output.manifest');
    expect(written?.type).toBe('application/x-ndjson');
    const refs = written!.body
      .trim()
      .split('\n')
      .map((l) => groundTruthRowSchema('label').parse(JSON.parse(l))['source-ref']);
    expect(refs).toEqual(moved.filter((r) => r.error === null).map((r) => r.key));
  });
});
