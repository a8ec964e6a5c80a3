/**
 * Scheduled runs, pure: date patterns, the run a firing makes and its firing time, --cron/--every
 * parsing, self-calibrating schedules (the template, the refusals of `schedule add`), and templates
 * stored before self-calibration.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { describeSelfCalibration, parseTiming } from '../../cli/commands/schedule.js';
import { main } from '../../cli/main.js';
import { DECIDED_AT_WARMUP } from '../../pipeline/routing-resolver.js';
import { expandDatePattern, firingTime, runForFiring, ScheduleTemplate } from '../../workers/run-scheduler.js';
import { RUN_DEFAULTS, fakePin } from '../helpers/run-spec.js';

/** A template as `schedule add` stores it (fixed threshold 0.5). */
function template(): ScheduleTemplate {
  return {
    schedule: 'nightly',
    source: 's3://in/{date}/',
    out: 's3://out/{date}/',
    extensions: ['.png'],
    run: {
      metric: 'maxprob',
      batchSize: 8,
      ...RUN_DEFAULTS,
      stages: [
        { name: 'little', model: fakePin('/m/l.onnx'), gmacsPerImage: 0.1, threshold: 0.5 },
        { name: 'big', model: fakePin('/m/b.onnx'), gmacsPerImage: 4, threshold: null },
      ],
    },
  };
}

describe('date patterns and firings', () => {
  it('{date} and {datetime} become the firing time in UTC', () => {
    const at = new Date('2026-03-09T23:59:58.123Z');
    expect(expandDatePattern('s3://out/{date}/', at)).toBe('s3://out/2026-03-09/');
    expect(expandDatePattern('/data/{date}/{datetime}/x-{date}', at)).toBe('/data/2026-03-09/2026-03-09T23-59-58Z/x-2026-03-09');
    expect(expandDatePattern('s3://out/plain/', at)).toBe('s3://out/plain/');
  });

  it('each firing is its own run: id from the schedule and the firing time', () => {
    const t = template();
    const a = runForFiring(t, Date.UTC(2026, 0, 2, 2));
    const b = runForFiring(t, Date.UTC(2026, 0, 3, 2));
    expect(a).toMatchObject({
      runId: `nightly-${Date.UTC(2026, 0, 2, 2)}`,
      source: 's3://in/2026-01-02/',
      out: 's3://out/2026-01-02/',
      batchSize: 8,
      createdAt: '2026-01-02T02:00:00.000Z',
    });
    expect(b.runId).not.toBe(a.runId);
  });

  it("the firing time comes from BullMQ's slot, not from when the job was queued", () => {
    expect(firingTime({ id: 'repeat:nightly:1767319200000', opts: { prevMillis: 1767319200000 }, timestamp: 5 })).toBe(1767319200000);
    expect(firingTime({ id: 'repeat:nightly:1767319200000', opts: {}, timestamp: 5 })).toBe(1767319200000);
    expect(firingTime({ id: 'other', opts: {}, timestamp: 5 })).toBe(5);
  });

  it('timing needs exactly one of --cron and --every', () => {
    expect(parseTiming({ cron: '0 2 * * *' })).toEqual({ cron: '0 2 * * *' });
    expect(parseTiming({ cron: '0 2 * * *', tz: 'Europe/Berlin' })).toEqual({ cron: '0 2 * * *', tz: 'Europe/Berlin' });
    expect(parseTiming({ every: 500 })).toEqual({ every: 500 });
    expect(() => parseTiming({})).toThrow(/exactly one of --cron/);
    expect(() => parseTiming({ cron: '* * * * *', every: 5 })).toThrow(/exactly one of --cron/);
    expect(() => parseTiming({ every: 5, tz: 'UTC' })).toThrow(/--tz applies to --cron only/);
  });
});

describe('self-calibrating schedules', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  it('every firing is a self-calibrating run of its own: the target in its spec, the first threshold decided at warm-up', () => {
    const t = template();
    const selfCalibration = { targetAgreement: 0.95, delta: 0.05, warmup: { images: 400 } };
    t.run.stages[0]!.threshold = DECIDED_AT_WARMUP;
    t.run.selfCalibration = selfCalibration;
    const stored = ScheduleTemplate.parse(JSON.parse(JSON.stringify(t)));
    const [a, b] = [Date.UTC(2026, 0, 2, 2), Date.UTC(2026, 0, 3, 2)].map((at) => runForFiring(stored, at));
    for (const spec of [a!, b!]) {
      expect(spec.selfCalibration).toEqual(selfCalibration);
      expect(spec.stages.map((s) => s.threshold)).toEqual([DECIDED_AT_WARMUP, null]);
    }
    // The warm-up's hash seed is the run id: another night, another warm-up.
    expect(a!.runId).not.toBe(b!.runId);
  });

  it('a template stored before self-calibration still parses and fires a fixed-threshold run', () => {
    // Stored by the version before --target-agreement on schedule add (no selfCalibration anywhere).
    const old = JSON.parse(JSON.stringify(template()));
    expect(JSON.stringify(old)).not.toContain('selfCalibration');
    const spec = runForFiring(ScheduleTemplate.parse(old), Date.UTC(2026, 0, 2, 2));
    expect(spec.selfCalibration).toBeUndefined();
    expect(spec.stages[0]!.threshold).toBe(0.5);
  });

  it('schedule list describes it in a few words', () => {
    expect(describeSelfCalibration({ targetAgreement: 0.95, delta: 0.05, warmup: { images: 400 } })).toBe('self-calibrating: 95% at δ 0.05, warm-up 400');
    expect(describeSelfCalibration({ targetAgreement: 0.99, delta: 0.1, warmup: { fraction: 0.05 } })).toBe('self-calibrating: 99% at δ 0.1, warm-up 5%');
    expect(describeSelfCalibration({ targetAgreement: 0.95, delta: 0.05 })).toBe(
      'self-calibrating: 95% at δ 0.05, warm-up 400 (default; at least 1% of the source)',
    );
  });

  it('cascade schedule add refuses what run and submit refuse: exit 2, one line, before Redis or models', async () => {
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      err.push(String(chunk));
      return true;
    });
    const add = ['node', 'cascade', 'schedule', 'add', 'nightly', '--every', '60000', '--source', 'nowhere', '--out', 'nowhere-out'];
    const cases: Array<[string[], string]> = [
      [['--target-agreement', '0.95', '--threshold', '0.5'], '--target-agreement decides the threshold from the warm-up: drop --threshold'],
      [['--target-agreement', '0.95', '--calibration', 'calib.json'], '--target-agreement needs no calib.json: drop --calibration'],
      [['--target-agreement', '1.5'], '--target-agreement 1.5: expected a fraction between 0 and 1 (e.g. 0.95)'],
      [['--target-agreement', '0.95', '--warmup', '0'], '--warmup 0: expected a number of images (e.g. 400) or a percentage of the source (e.g. 5%)'],
      [['--warmup', '400'], '--delta and --warmup go with --target-agreement'],
    ];
    for (const [flags, line] of cases) {
      err.length = 0;
      process.exitCode = undefined;
      await main([...add, ...flags]);
      expect([process.exitCode, err.join('')], flags.join(' ')).toEqual([2, `cascade: ${line}\n`]);
    }
  });
});
