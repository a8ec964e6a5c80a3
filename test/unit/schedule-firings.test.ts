/** Scheduled runs, pure: date patterns, the run a firing makes and its firing time, and --cron/--every parsing. */
import { describe, expect, it } from 'vitest';
import { parseTiming } from '../../cli/commands/schedule.js';
import { expandDatePattern, firingTime, runForFiring, type ScheduleTemplate } from '../../workers/run-scheduler.js';
import { RUN_DEFAULTS, fakePin } from '../helpers/run-spec.js';

describe('date patterns and firings', () => {
  it('{date} and {datetime} become the firing time in UTC', () => {
    const at = new Date('2026-03-09T23:59:58.123Z');
    expect(expandDatePattern('s3://out/{date}/', at)).toBe('s3://out/2026-03-09/');
    expect(expandDatePattern('/data/{date}/{datetime}/x-{date}', at)).toBe('/data/2026-03-09/2026-03-09T23-59-58Z/x-2026-03-09');
    expect(expandDatePattern('s3://out/plain/', at)).toBe('s3://out/plain/');
  });

  it('each firing is its own run: id from the schedule and the firing time', () => {
    const t: ScheduleTemplate = {
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
