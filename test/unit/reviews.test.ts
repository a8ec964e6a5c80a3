/**
 * The pure parts of importing reviews: matching tasks to rows (keys, local-files URLs), class
 * names two classes share (ImageNet's crane and maillot), the latest annotation winning, merging
 * with stored reviews, the CSV reader, Ground Truth lines and format detection.
 */
import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../pipeline/audit/audit-part.js';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { csvRecords, parseLabelStudioCsv } from '../../pipeline/reviews/label-studio-csv.js';
import { parseGroundTruthManifest } from '../../pipeline/reviews/ground-truth-import.js';
import { matchReviews, mergeReviews, type ReviewRun } from '../../pipeline/reviews/match-reviews.js';
import { detectReviewFormat } from '../../pipeline/reviews/review-formats.js';
import { reviewReport } from '../../pipeline/reviews/review-report.js';
import type { ParsedTask, ReviewRow } from '../../pipeline/reviews/review-row.js';

/** ImageNet's two shared names, at their real indices, in a small label list. */
const NAMES = Array.from({ length: 640 }, (_, i) => `class${i}`);
NAMES[134] = 'crane';
NAMES[517] = 'crane';
NAMES[638] = 'maillot';
NAMES[639] = 'maillot';

const row = (key: string, label: number | null, stage = 'little'): ManifestRow => ({
  key,
  label,
  labelName: label === null ? null : NAMES[label]!,
  confidence: label === null ? null : 0.9,
  stage: label === null ? null : stage,
  top5: [],
  error: label === null ? { kind: 'decode', message: 'bad' } : null,
});

const rows = [row('/photos/bird.jpg', 134), row('/photos/site.jpg', 517), row('/photos/suit.jpg', 1), row('/photos/a/x.jpg', 2), row('/photos/b/x.jpg', 3)];
const run: ReviewRun = { runId: 'r1', rows: new Map(rows.map((r) => [r.key, r])), names: NAMES, audits: new Map() };
const source = { format: 'label-studio-json' as const, file: 'f.json' };

function task(ref: string, key: string | null, choices: Array<[string | null, string | null]>, extra: Partial<ParsedTask> = {}): ParsedTask {
  return {
    ref,
    key,
    image: null,
    run: null,
    reasons: [],
    annotations: choices.map(([at, choice], i) => ({ id: String(i), annotator: `a${i}`, choice, classIndex: null, cancelled: false, at })),
    ...extra,
  };
}

describe('matchReviews', () => {
  it('a shared name is the class the cascade (or its audit) answered among the hint’s, else refused by name', () => {
    const suit = new Map<string, AuditEntry>([
      [
        '/photos/suit.jpg',
        {
          key: '/photos/suit.jpg',
          pos: 2,
          little: { stage: 'little', label: 1, labelName: 'class1', confidence: 0.9 },
          big: { stage: 'big', label: 639, labelName: 'maillot', confidence: 0.8 },
          agree: false,
          error: null,
        },
      ],
    ]);
    const m = matchReviews(
      [
        task('task 1', '/photos/bird.jpg', [['2026-01-01T00:00:00Z', 'crane']]),
        task('task 2', '/photos/site.jpg', [['2026-01-01T00:00:00Z', 'crane']]),
        task('task 3', '/photos/suit.jpg', [['2026-01-01T00:00:00Z', 'maillot']]),
        task('task 4', '/photos/a/x.jpg', [['2026-01-01T00:00:00Z', 'crane']]),
      ],
      { ...run, audits: suit },
      source,
    );
    expect(m.reviews.map((r) => [r.key, r.label, r.labelName])).toEqual([
      ['/photos/bird.jpg', 134, 'crane'],
      ['/photos/site.jpg', 517, 'crane'],
      ['/photos/suit.jpg', 639, 'maillot'],
    ]);
    expect(m.warnings).toEqual([
      'task 4: "crane" names classes 134 and 517 (the labeling config\'s hint) and the cascade answered neither, so which one is unknown: not imported',
    ]);
  });

  it('matches local-files URLs by their path, refusing one that two keys end in', () => {
    const m = matchReviews(
      [
        task('task 1', null, [[null, 'class7']], { image: '/data/local-files/?d=photos/a/x.jpg' }),
        task('task 2', null, [[null, 'class7']], { image: '/data/local-files/?d=x.jpg' }),
        task('task 3', null, [[null, 'class7']], { image: '/photos/suit.jpg' }),
      ],
      run,
      source,
    );
    expect(m.reviews.map((r) => r.key)).toEqual(['/photos/a/x.jpg', '/photos/suit.jpg']);
    expect(m.warnings).toEqual(['task 2: /data/local-files/?d=x.jpg is not an image of run r1 (a task from another run?): not imported']);
  });

  it('the latest annotation wins whatever its place; an unknown time never beats a known one; a class index stands for a nameless class', () => {
    const m = matchReviews(
      [
        task('task 1', '/photos/suit.jpg', [
          ['2026-01-01T00:00:00Z', 'class6'],
          ['2026-01-02T00:00:00Z', 'class5'],
          [null, 'class7'],
        ]),
        task('task 2', '/photos/a/x.jpg', [['2026-01-01T00:00:00Z', '9']]),
      ],
      run,
      source,
    );
    expect(m.reviews.map((r) => [r.label, r.annotations, r.annotatorsDisagree, r.reviewer])).toEqual([
      [5, 3, true, 'a1'],
      [9, 1, false, 'a0'],
    ]);
  });

  it('two tasks of one image: the later review is kept and both are named', () => {
    const m = matchReviews(
      [task('task 1', '/photos/suit.jpg', [['2026-01-02T00:00:00Z', 'class5']]), task('task 2', '/photos/suit.jpg', [['2026-01-01T00:00:00Z', 'class6']])],
      run,
      source,
    );
    expect(m.reviews.map((r) => r.label)).toEqual([5]);
    expect(m.warnings).toEqual(['task 1 and task 2 review the same image /photos/suit.jpg; the later review is kept']);
  });
});

describe('mergeReviews', () => {
  const review = (key: string, label: number, at: string | null): ReviewRow => ({
    key,
    label,
    labelName: NAMES[label]!,
    reviewer: null,
    reviewedAt: at,
    annotations: 1,
    annotatorsDisagree: false,
    reasons: [],
    source: { format: 'label-studio-json', file: 'f', task: 't' },
  });
  const order = (k: string) => rows.findIndex((r) => r.key === k);

  it('adds, replaces with newer, keeps a stored review newer than the incoming one, and orders by the manifest', () => {
    const stored = [review('/photos/suit.jpg', 1, '2026-01-02T00:00:00Z'), review('/photos/bird.jpg', 134, '2026-01-01T00:00:00Z')];
    const merged = mergeReviews(
      stored,
      [review('/photos/suit.jpg', 2, '2026-01-01T00:00:00Z'), review('/photos/bird.jpg', 4, '2026-01-03T00:00:00Z'), review('/photos/a/x.jpg', 3, null)],
      order,
    );
    expect(merged.rows.map((r) => [r.key, r.label])).toEqual([
      ['/photos/bird.jpg', 4],
      ['/photos/suit.jpg', 1],
      ['/photos/a/x.jpg', 3],
    ]);
    expect([merged.added, merged.replaced, merged.older, merged.unchanged]).toEqual([1, 1, 1, 0]);
    expect(mergeReviews(merged.rows, merged.rows, order)).toMatchObject({ added: 0, replaced: 0, unchanged: 3 });
  });

  it('the report counts errors a human labelled apart from the accuracy', () => {
    const withError = [...rows, row('/photos/broken.jpg', null)];
    const r = reviewReport(
      withError,
      new Map([
        ['/photos/broken.jpg', review('/photos/broken.jpg', 1, null)],
        ['/photos/suit.jpg', review('/photos/suit.jpg', 2, null)],
      ]),
      new Map(),
    );
    expect([r.reviewed, r.errorRowsLabelled, r.accuracy.overall.n, r.accuracy.overall.hits, r.labelledRows]).toEqual([2, 1, 1, 0, 5]);
  });
});

describe('review files', () => {
  it('CSV: quoted commas, quotes and line breaks; CRLF; a record of the wrong width is a warning', () => {
    expect(csvRecords('a,b\r\n"x, ""y""","line\nbreak"\r\n\r\n')).toEqual([
      ['a', 'b'],
      ['x, "y"', 'line\nbreak'],
    ]);
    const parsed = parseLabelStudioCsv('key,id,choice,annotator\n/photos/suit.jpg,1,class5,3\n/photos/bird.jpg,2\n');
    expect(parsed.tasks.map((t) => [t.ref, t.key, t.annotations[0]?.choice])).toEqual([['task 1', '/photos/suit.jpg', 'class5']]);
    expect(parsed.warnings).toEqual(['record 2: 2 fields where the header has 4']);
  });

  it('Ground Truth lines: the attribute found beside its -metadata, machine labels and bad lines warned', () => {
    const meta = (human: string) => ({ 'class-name': 'class5', 'human-annotated': human, 'creation-date': '2026-01-01T00:00:00.000000', 'job-name': 'j' });
    const text = [
      JSON.stringify({ 'source-ref': 's3://b/1.jpg', animal: 5, 'animal-metadata': meta('yes') }),
      'not json',
      JSON.stringify({ 'source-ref': 's3://b/2.jpg', animal: 5, 'animal-metadata': meta('no') }),
      JSON.stringify({ 'source-ref': 's3://b/3.jpg' }),
    ].join('\n');
    const parsed = parseGroundTruthManifest(text);
    expect(parsed.tasks.map((t) => [t.image, t.annotations.map((a) => a.classIndex)])).toEqual([
      ['s3://b/1.jpg', [5]],
      ['s3://b/2.jpg', []],
    ]);
    expect(parsed.warnings).toEqual([
      expect.stringMatching(/^line 2: not JSON/),
      'line 3: animal-metadata says human-annotated "no": a machine label, not a review',
      'line 4: no class index under a label attribute (a number beside <attribute>-metadata)',
    ]);
  });

  it('detects each format from its content (CSV by its name)', () => {
    expect(detectReviewFormat('x.json', '[{"id":1,"data":{},"annotations":[]}]')?.name).toBe('label-studio-json');
    expect(detectReviewFormat('x.json', '[{"id":1,"choice":"a"}]')?.name).toBe('label-studio-json-min');
    expect(detectReviewFormat('output.manifest', '{"source-ref":"s3://b/k"}')?.name).toBe('ground-truth');
    expect(detectReviewFormat('x.csv', 'id,choice\n')?.name).toBe('label-studio-csv');
    expect(detectReviewFormat('notes.txt', 'hello')).toBeNull();
  });
});
