/**
 * Which reviewed run a scheduled firing calibrates from, and its refusals that need no models
 * (pipeline/reviews/review-calibration.ts), on local run folders: the location itself first,
 * then the candidates newest first, passing over runs without reviews or summary; no random
 * slice, a malformed reviews.jsonl and no reviewed run are recorded refusals with the fallback.
 * The certified path, with real models and Redis: test/integration/reviews-loop.test.ts.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarize } from '../../pipeline/results/manifest.js';
import { calibrateFromReviews, findReviewedRun, isUnder } from '../../pipeline/reviews/review-calibration.js';
import type { ReviewRow } from '../../pipeline/reviews/review-row.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';

let root: string;
const open = (location: string) => new LocalStore(location);

const review = (key: string, reasons: string[]): ReviewRow => ({
  key,
  label: 0,
  labelName: 'red',
  reviewer: '1',
  reviewedAt: '2026-12-01T09:00:00.000Z',
  annotations: 1,
  annotatorsDisagree: false,
  reasons,
  source: { format: 'label-studio-json', file: 'a.json', task: '1' },
});

/** A run folder `name` under root with a summary.json (unless `summary` is false) and the given reviews.jsonl text (none when null). */
async function runDir(name: string, reviews: string | null, summary = true): Promise<string> {
  const dir = join(root, 'nightly', name);
  await mkdir(dir, { recursive: true });
  if (summary) {
    const s = summarize({
      runId: name,
      source: '/in/',
      out: dir,
      threshold: 0.5,
      metric: 'maxprob',
      stages: [
        { name: 'little', gmacsPerImage: 1 },
        { name: 'big', gmacsPerImage: 4 },
      ],
      parts: [],
      errorsByKind: {},
      images: 0,
      startedAt: new Date(0),
      finishedAt: new Date(1000),
    });
    await writeFile(join(dir, 'summary.json'), JSON.stringify(s));
  }
  if (reviews !== null) await writeFile(join(dir, 'reviews.jsonl'), reviews);
  return dir;
}

const jsonl = (rows: ReviewRow[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');
let reviewed: string;
let noSummary: string;
let bare: string;
let picked: string;
let broken: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-review-calibration-'));
  reviewed = await runDir('day1', jsonl([review('/in/a.png', ['random'])]));
  noSummary = await runDir('day2', jsonl([review('/in/a.png', ['random'])]), false);
  bare = await runDir('day3', null);
  picked = await runDir('picked', jsonl([review('/in/a.png', ['low-confidence'])]));
  broken = await runDir('broken', '{"key": "/in/a.png"}\nnot json\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('findReviewedRun', () => {
  it('takes the location itself when it holds reviews, else the first candidate with reviews and a summary', async () => {
    expect((await findReviewedRun(reviewed, [], open))?.location).toBe(reviewed);
    expect((await findReviewedRun(join(root, 'nightly'), [bare, noSummary, reviewed], open))?.summary.runId).toBe('day1');
    expect(await findReviewedRun(join(root, 'nightly'), [bare, noSummary], open)).toBeNull();
  });

  it('isUnder: the location or below it, never a sibling sharing a prefix', () => {
    expect(isUnder('s3://b/nightly/day1/', 's3://b/nightly/')).toBe(true);
    expect(isUnder('s3://b/nightly/', 's3://b/nightly')).toBe(true);
    expect(isUnder('s3://b/nightly-old/day1/', 's3://b/nightly')).toBe(false);
    expect(isUnder('/out/a', '/out/a/')).toBe(true);
  });
});

describe('calibrateFromReviews refusals', () => {
  const target = { rule: 'guaranteed-drop' as const, maxDrop: 0.05, delta: 0.05 };
  const calibration = (location: string, candidates: string[] = []) =>
    calibrateFromReviews({
      from: { location, target },
      candidates,
      open,
      score: () => Promise.reject(new Error('no model is scored on a refusal found before scoring')),
      fallback: "the schedule's own calibration: maxprob ≥ 0.9",
    });

  it('no reviewed run: refused, nothing read, the fallback named', async () => {
    expect(await calibration(join(root, 'nightly'), [bare])).toEqual({
      routing: null,
      record: {
        from: join(root, 'nightly'),
        run: null,
        runId: null,
        reviewsSha256: null,
        reviews: 0,
        leftOut: 0,
        latest: null,
        target,
        certified: false,
        refusal: `no reviewed run at or under ${join(root, 'nightly')} (no merged run there has a reviews.jsonl)`,
        fallback: "the schedule's own calibration: maxprob ≥ 0.9",
      },
    });
  });

  it('only picked reviews: no fair sample; the reviews file is still named by its hash', async () => {
    const { record, routing } = await calibration(picked);
    expect(routing).toBeNull();
    expect(record).toMatchObject({
      run: picked,
      runId: 'picked',
      reviews: 0,
      leftOut: 1,
      certified: false,
      reviewsSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(record.refusal).toMatch(/^none of the 1 reviews of .* is of a random slice/);
  });

  it('a malformed reviews.jsonl is a refusal naming its line, not a firing that fails on every retry', async () => {
    const { record } = await calibration(broken);
    expect(record).toMatchObject({ runId: 'broken', certified: false, refusal: expect.stringMatching(/^reviews\.jsonl line 1 in .* is not a review/) });
  });

  it('reviewed images this process cannot read: the refusal says how many and why', async () => {
    const unread = (name: string) => ({
      name,
      path: `/m/${name}.onnx`,
      gmacsPerImage: 1,
      scored: { classes: 0, probs: new Map(), errors: new Map([['/in/a.png', 'Forbidden path: /in/a.png is outside sources.localRoots']]) },
      pin: { sha256: '0'.repeat(64), numerics: 'exact', probe: null },
    });
    const { record, routing } = await calibrateFromReviews({
      from: { location: reviewed, target },
      candidates: [],
      open,
      score: async () => [unread('little'), unread('big')],
      fallback: 'kept',
    });
    expect(routing).toBeNull();
    expect(record).toMatchObject({ runId: 'day1', reviews: 1, certified: false });
    expect(record.refusal).toMatch(/\(1 of 1 reviewed images could not be scored here, e\.g\. \/in\/a\.png: Forbidden path: .* outside sources\.localRoots\)$/);
  });
});
