/**
 * `cascade status`, pure: the run view (queue/run-view.ts: states, errors by kind, routed, cost
 * saved, ETA), pending images per stage, bars and the run list, from tracker counters.
 */
import { describe, expect, it } from 'vitest';
import { failOnErrors } from '../../cli/fail-on-errors.js';
import { buildRunStatus, formatDuration, formatRunList, formatRunStatus, progressBar, RunStatus } from '../../cli/format-status.js';
import { renderRunsPage } from '../../cli/runs-page.js';
import type { RunProgress } from '../../queue/run-tracker.js';
import { buildRunView, RunView, runState } from '../../queue/run-view.js';
import { statusRunSpec } from '../helpers/run-spec.js';

const spec = statusRunSpec;

const NOW = new Date('2026-01-01T00:00:10.000Z');
/** The tracker's cost of a run whose parts carried no cost figures yet. */
const NO_COST: RunProgress['cost'] = { seconds: 0, bigOnlySeconds: null, saved: null, stages: [], unknownParts: 0, bigOnlyBasis: 'none' };
/** Stage counters of a run without error rows. */
const CLEAN = {
  errorsByKind: {},
  stages: [
    { images: 100, accepted: 80, forwarded: 20, errors: 0 },
    { images: 20, accepted: 20, forwarded: 0, errors: 0 },
  ],
};

function progress(o: Partial<RunProgress> = {}): RunProgress {
  return {
    spec: spec('r1'),
    listed: true,
    total: 100,
    listedImages: 100,
    batches: 10,
    final: 40,
    stages: [
      { images: 50, accepted: 30, forwarded: 18, errors: 2 },
      { images: 8, accepted: 8, forwarded: 0, errors: 0 },
    ],
    errorsByKind: { decode: 2 },
    cost: NO_COST,
    audit: { expected: 0, done: 0, agreeing: 0 },
    startedAt: '2026-01-01T00:00:00.000Z',
    completedAt: null,
    mergedAt: null,
    mergeError: null,
    failedReason: null,
    ...o,
  } as RunProgress;
}

describe('status maths and text', () => {
  it('derives pending images per stage, images/s and ETA from the tracker counters', () => {
    const s = buildRunStatus(
      progress(),
      [
        { queued: 4, active: 1, failed: 0 },
        { queued: 1, active: 1, failed: 1 },
      ],
      NOW,
    );
    expect(RunStatus.parse(s)).toEqual(s);
    expect(s).toMatchObject({ state: 'running', total: 100, done: 40, fraction: 0.4, imagesPerSecond: 4, etaSeconds: 15 });
    expect(s.stages).toEqual([
      { name: 'little', queued: 4, active: 1, failed: 0, done: 50, accepted: 30, routed: 18, errors: 2, pending: 50 },
      { name: 'big', queued: 1, active: 1, failed: 1, done: 8, accepted: 8, routed: 0, errors: 0, pending: 10 },
    ]);
    const text = formatRunStatus(s);
    expect(text).toContain('run r1  running  s3://in/x/ → s3://out/x/');
    expect(text).toContain(`${progressBar(0.4)}  40.0%  40/100 images  4.0 images/s  ETA 15 s`);
    expect(text).toContain('  errors 2 (decode 2)  routed to big 36.0%  cost saved —');
    expect(text).toContain('  listed 100  queued 60  done 40\n');
    expect(formatRunStatus(buildRunStatus(progress({ listed: false, total: null, listedImages: 64, window: 2 }), [], NOW))).toContain(
      '  listed 64 so far  queued 24  done 40  (window 2 batches)',
    );
    expect(text).toMatch(/little\s+4\s+1\s+0\s+\|\s+50\s+30\s+18\s+2\s+50/);
    expect(text).toMatch(/big\s+1\s+1\s+1\s+\|\s+8\s+8\s+0\s+0\s+10/);
  });

  it('says where a windowed listing stands (shard, key, line) and the bytes held under a byte budget, in text and JSON', () => {
    const listing = (o: Partial<RunProgress>) => buildRunStatus(progress({ listed: false, total: null, listedImages: 64, window: 8, ...o }), [], NOW);
    const shard = (name: string, source: string) => ({
      cursor: JSON.stringify({ kind: 'shard', shard: 11, name, sample: 40 }),
      plan: JSON.stringify({ source, extensions: ['.jpg'] }),
    });
    const s = listing({ windowBytes: 4 * 1024 * 1024, bytesInFlight: 1_258_291, ...shard('/data/shards/000011.tar', '/data/shards/{000000..001999}.tar') });
    expect(RunStatus.parse(s)).toEqual(s);
    expect(s).toMatchObject({ windowBytes: 4_194_304, bytesInFlight: 1_258_291, listingAt: 'shard 12 of 2,000 (000011.tar), 40 samples in' });
    expect(formatRunStatus(s)).toContain(
      '  listed 64 so far  queued 24  done 40  (window 8 batches)\n  listing: shard 12 of 2,000 (000011.tar), 40 samples in  bytes in flight 1.2 MiB of 4.0 MiB\n',
    );
    // The dashboard's Runs page: the same words on the run's bar.
    expect(renderRunsPage([s], { prefix: 'cascade', refreshSeconds: 5, now: NOW })).toContain(
      'title="listing: shard 12 of 2,000 (000011.tar), 40 samples in  bytes in flight 1.2 MiB of 4.0 MiB"',
    );
    // A glob's shards are counted only by listing them: the count is left out.
    expect(listing(shard('s3://b/sh/a-000011.tar', 's3://b/sh/*.tar')).listingAt).toBe('shard 12 (a-000011.tar), 40 samples in');
    const key = `photos/${'x'.repeat(80)}/img_0042.jpg`;
    const prefix = listing({ cursor: JSON.stringify({ kind: 'prefix', after: key, splits: ['photos/m'] }) });
    expect(prefix.listingAt).toBe(`after key …${key.slice(-59)}`);
    expect(prefix.windowBytes).toBeNull();
    expect(prefix.bytesInFlight).toBeNull();
    expect(formatRunStatus(prefix)).toContain(`\n  listing: after key …${key.slice(-59)}\n`);
    expect(listing({ cursor: JSON.stringify({ kind: 'key-list', line: 1204 }) }).listingAt).toBe('line 1,204');
    expect(listing({ cursor: '{"kind":"tape","reel":3}' }).listingAt).toBe('at a cursor this version does not read');
    // Listed: the cursor is history; no cursor, no byte budget: no line at all.
    const listed = buildRunStatus(progress({ cursor: JSON.stringify({ kind: 'key-list', line: 9 }), windowBytes: 1000, bytesInFlight: 0 }), [], NOW);
    expect(listed.listingAt).toBeNull();
    expect(formatRunStatus(listed)).toContain('  listed 100  queued 60  done 40\n  bytes in flight 0 B of 1000 B\n');
    expect(formatRunStatus(buildRunStatus(progress(), [], NOW))).toMatch(/done 40\n {2}errors/);
  });

  it('shows live audit agreement with its Wilson interval and flags drift against the promise', () => {
    const audited = progress({
      spec: { ...spec('r1'), audit: { fraction: 0.1, seed: '', expectAgreement: 0.99 } },
      audit: { expected: 60, done: 50, agreeing: 40 },
    });
    const s = buildRunStatus(audited, [], NOW);
    expect(RunStatus.parse(s)).toEqual(s);
    expect(s.audit).toMatchObject({ fraction: 0.1, sampled: 50, agreeing: 40, agreement: 0.8, expected: 60, promised: 0.99, drift: true });
    expect(formatRunStatus(s)).toMatch(/audit: 40\/50 agree = 80\.0% \(95% Wilson 67\.0%–88\.8%\), 50\/60 audits in; promised 99\.0% — DRIFT/);
    const none = buildRunStatus(
      progress({ spec: { ...spec('r1'), audit: { fraction: 0.02, seed: '' } }, audit: { expected: 3, done: 0, agreeing: 0 } }),
      [],
      NOW,
    );
    expect(formatRunStatus(none)).toContain('audit: 0/3 audits in so far (fraction 0.02 of accepted images)');
    expect(buildRunStatus(progress(), [], NOW).audit).toBeUndefined();
  });

  it('has no ETA while listing, and none left once complete', () => {
    const listing = buildRunStatus(progress({ listed: false, total: null, listedImages: 60 }), [], NOW);
    expect(listing).toMatchObject({ state: 'listing', etaSeconds: null, fraction: 40 / 60 });
    expect(formatRunStatus(listing)).toContain('40/60+ (listing) images');
    const done = buildRunStatus(progress({ ...CLEAN, final: 100, completedAt: '2026-01-01T00:00:05.000Z', mergedAt: '2026-01-01T00:00:06.000Z' }), [], NOW);
    expect(done).toMatchObject({ state: 'done', etaSeconds: 0, fraction: 1, imagesPerSecond: 20 });
    expect(formatRunStatus(done)).toMatch(/100\.0% {2}100\/100 images {2}20\.0 images\/s {2}done/);
  });

  it('names each state', () => {
    expect(runState(progress({ listed: false }))).toBe('listing');
    expect(runState(progress())).toBe('running');
    expect(runState(progress({ completedAt: 'x' }))).toBe('merging');
    expect(runState(progress({ ...CLEAN, completedAt: 'x', mergedAt: 'y' }))).toBe('done');
    expect(runState(progress({ completedAt: 'x', mergedAt: 'y' }))).toBe('done-with-errors');
    expect(runState(progress({ failedReason: 'listing failed' }))).toBe('failed');
    expect(runState(progress({ mergeError: 'disk full' }))).toBe('failed');
    expect(formatRunStatus(buildRunStatus(progress({ mergeError: 'disk full' }), [], NOW))).toContain('merge failed: disk full');
  });

  it('the view: done-with-errors when merged with error rows, failed with its reason, routed and cost saved', () => {
    const merged = { final: 100, completedAt: '2026-01-01T00:00:05.000Z', mergedAt: '2026-01-01T00:00:06.000Z' };
    const withErrors = buildRunView(progress(merged), NOW);
    expect(RunView.parse(withErrors)).toEqual(withErrors);
    expect(withErrors).toMatchObject({ state: 'done-with-errors', errors: 2, errorsByKind: { decode: 2 }, etaSeconds: 0 });
    expect(withErrors).not.toHaveProperty('failedReason');
    expect(buildRunView(progress({ ...merged, ...CLEAN }), NOW)).toMatchObject({ state: 'done', errors: 0, errorsByKind: {}, routed: 0.2 });
    // A listing that failed (the run hash's failedReason) is failed whatever the counters say.
    const listingFailed = buildRunView(progress({ listed: false, total: null, failedReason: 'listing failed: AccessDenied on s3://in/x/' }), NOW);
    expect(listingFailed).toMatchObject({ state: 'failed', failedReason: 'listing failed: AccessDenied on s3://in/x/', etaSeconds: null });
    expect(buildRunView(progress({ mergeError: 'disk full' }), NOW).failedReason).toBe('merge failed: disk full');
    // Cost saved comes from the run's cost accounting when there is one.
    expect(buildRunView(progress(), NOW).costSaved).toBeNull();
    expect(buildRunView(progress({ cost: { ...NO_COST, seconds: 30, bigOnlySeconds: 120, saved: 0.75 } }), NOW).costSaved).toBe(0.75);
    expect(formatRunStatus(buildRunStatus(progress({ cost: { ...NO_COST, seconds: 30, bigOnlySeconds: 120, saved: 0.75 } }), [], NOW))).toContain(
      'cost saved 75.0%',
    );
    // Nothing routed yet, or a single stage: unknown, not 0.
    expect(
      buildRunView(
        progress({
          stages: [
            { images: 0, accepted: 0, forwarded: 0, errors: 0 },
            { images: 0, accepted: 0, forwarded: 0, errors: 0 },
          ],
        }),
        NOW,
      ).routed,
    ).toBeNull();
  });

  it('no ETA without progress or elapsed time', () => {
    expect(buildRunView(progress({ final: 0 }), NOW).etaSeconds).toBeNull();
    expect(buildRunView(progress({ startedAt: NOW.toISOString() }), NOW).etaSeconds).toBeNull();
    expect(buildRunView(progress({ startedAt: null }), NOW).etaSeconds).toBeNull();
    expect(formatRunStatus(buildRunStatus(progress({ final: 0 }), [], NOW))).toMatch(/0\/100 images {2}0\.0 images\/s\n/);
  });

  it('--fail-on-errors: one line naming each failed or done-with-errors run; running and clean runs pass', () => {
    const merged = { final: 100, completedAt: '2026-01-01T00:00:05.000Z', mergedAt: '2026-01-01T00:00:06.000Z' };
    expect(() => failOnErrors([buildRunView(progress(), NOW), buildRunView(progress({ ...merged, ...CLEAN }), NOW)])).not.toThrow();
    const bad = [buildRunView(progress({ ...merged, spec: spec('e1') }), NOW), buildRunView(progress({ spec: spec('f1'), mergeError: 'disk full' }), NOW)];
    expect(() => failOnErrors(bad)).toThrow('run e1 done with 2 (decode 2) error rows; run f1 failed: merge failed: disk full (--fail-on-errors)');
  });

  it('draws bars and durations', () => {
    expect(progressBar(0.5, 10)).toBe('[█████░░░░░]');
    expect(progressBar(2, 4)).toBe('[████]');
    expect(progressBar(Number.NaN, 4)).toBe('[░░░░]');
    expect(formatDuration(42.4)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(7620)).toBe('2 h 07 min');
    expect(formatDuration(null)).toBe('?');
  });

  it('lists runs one per line: state, progress, errors by kind, routed, cost saved, ETA', () => {
    const merged = { final: 100, completedAt: '2026-01-01T00:00:05.000Z', mergedAt: '2026-01-01T00:00:06.000Z' };
    const text = formatRunList([buildRunView(progress(), NOW), buildRunView(progress({ ...merged, spec: spec('r2-long-id') }), NOW)]);
    expect(text.split('\n')).toHaveLength(3);
    expect(text.split('\n')[0]).toMatch(/^RUN\s+STATE\s+PROGRESS\s+ERRORS\s+ROUTED\s+SAVED\s+ETA\s+STARTED\s+OUT$/);
    expect(text).toMatch(/^r1\s+running\s+40\/100\s+2 \(decode 2\)\s+36\.0%\s+—\s+15 s\s+2026-01-01T00:00:00.000Z\s+s3:\/\/out\/x\/$/m);
    // A finished run has a blank ETA.
    expect(text).toMatch(/^r2-long-id\s+done-with-errors\s+100\/100\s+2 \(decode 2\)\s+36\.0%\s+—\s+2026-01-01T00:00:00.000Z\s+s3:\/\/out\/x\/$/m);
    expect(formatRunList([])).toBe('no runs yet');
  });
});
