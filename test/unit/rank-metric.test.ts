import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { CascadeConfig, RankReference } from '../../config/schema.js';
import { confidence, orderStatistics, PNORM_P, pNormMaxLogit, rankConfidence, rankOf, rankReference } from '../../pipeline/routing.js';
import { seeded } from '../../bench/stats.js';
import { CalibrationFile, ChainCalibrationFile } from '../../config/calibration.js';
import { calibrate } from '../../pipeline/calibration/calibrate.js';
import { calibrationFile } from '../../pipeline/calibration/report.js';
import type { CalibrationEntry } from '../../pipeline/calibration/sweep.js';
import { peaked } from '../helpers/probabilities.js';
import { fakePin, RUN_DEFAULTS } from '../helpers/run-spec.js';
import { RunSpec } from '../../queue/jobs.js';
import { ScheduleTemplate } from '../../workers/run-scheduler.js';

/** A reference small enough to rank against by hand. */
const ref: RankReference = { margin: [0.1, 0.3, 0.45, 0.7], pnorm: [0.5, 0.9, 0.99, 1] };

describe('rank metric', () => {
  it('is the mean of the margin and pnorm ECDF values (share of the reference ≤ x), by hand', () => {
    const row = [0.7, 0.2, 0.1];
    // margin 0.5: 0.1, 0.3 and 0.45 are ≤ it → 3/4. pnorm: centred logs (1.0662, −0.1865, −0.8797),
    // ‖·‖₈ = 1.0924, so 0.976: 0.5 and 0.9 are ≤ it → 2/4. Mean (0.75 + 0.5) / 2.
    expect(pNormMaxLogit(row, PNORM_P)).toBeCloseTo(0.976, 3);
    expect(rankConfidence(row, ref)).toBe(0.625);
    expect(confidence(row, 'rank', ref)).toBe(0.625);
    // Ties count as ≤: a value equal to a reference point ranks at or above it.
    expect(rankOf(0.3, 0.9, ref)).toBe(0.5);
    expect(rankOf(0.05, 0.4, ref)).toBe(0);
    expect(rankOf(0.7, 1, ref)).toBe(1);
  });

  it('needs a reference', () => {
    expect(() => confidence([0.7, 0.2, 0.1], 'rank')).toThrow(/metric rank comes from `cascade calibrate`.*--calibration calib\.json/);
  });

  it('keeps every value of a small sample, sorted, and evenly spaced order statistics of a large one', () => {
    expect(orderStatistics([0.3, 0.1, 0.2])).toEqual([0.1, 0.2, 0.3]);
    const r = seeded(3);
    const values = Array.from({ length: 3000 }, (_, i) => i).sort(() => r() - 0.5);
    const kept = orderStatistics(values);
    expect(kept).toHaveLength(1025);
    expect(kept[0]).toBe(0);
    expect(kept[1024]).toBe(2999);
    // Order statistic i·(n − 1)/1024 of 0..2999 is that value itself, rounded.
    kept.forEach((v, i) => expect(v).toBe(Math.round((i * 2999) / 1024)));
  });

  it('builds its reference from probability rows: margin and pnorm of each, ascending', () => {
    const rows = [
      [0.9, 0.05, 0.05],
      [0.5, 0.3, 0.2],
      [0.4, 0.35, 0.25],
    ];
    const built = rankReference(rows);
    expect(built.margin.map((m) => Number(m.toFixed(6)))).toEqual([0.05, 0.2, 0.85]);
    expect(built.pnorm).toEqual(rows.map((row) => pNormMaxLogit(row, PNORM_P)).sort((a, b) => a - b));
    expect(RankReference.safeParse(built).success).toBe(true);
    // Ranked against itself, the surest row is top of both.
    expect(rankConfidence(rows[0]!, built)).toBe(1);
  });
});

describe('rank in configs', () => {
  const base = { little: { path: 'l.onnx' }, big: { path: 'b.onnx' }, metric: 'rank' };

  it('a config with metric rank carries its reference', () => {
    expect(CascadeConfig.safeParse({ ...base, rankReference: ref }).success).toBe(true);
    const r = CascadeConfig.safeParse(base);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]).toMatchObject({ path: ['rankReference'], message: expect.stringMatching(/--calibration calib\.json/) });
  });

  it('refuses an unsorted, empty or non-finite reference', () => {
    for (const margin of [[0.3, 0.1], [], [0.1, Number.NaN]]) {
      expect(RankReference.safeParse({ ...ref, margin }).success).toBe(false);
      expect(CascadeConfig.safeParse({ ...base, rankReference: { ...ref, margin } }).success).toBe(false);
    }
    expect(RankReference.safeParse({ ...ref, margin: [0.3, 0.1] }).error!.issues[0]!.message).toMatch(/sorted ascending/);
  });

  it('`--metric rank` without a calib.json is one line naming calibrate', async () => {
    const err = await loadConfig({ overrides: { little: 'l.onnx', big: 'b.onnx', metric: 'rank' }, env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).toMatch(/^metric rank comes from `cascade calibrate`/);
  });
});

describe('calibrate with rank', () => {
  const costs = { littleGmacs: 1, bigGmacs: 10 };
  /** Little's top probability c and runner-up share vary; big agrees unless c is low. */
  function table(n: number, seed: number, shift: number): CalibrationEntry[] {
    const r = seeded(seed);
    return Array.from({ length: n }, (_, i) => {
      const c = Math.min(0.99, 0.4 + shift + 0.6 * r());
      const split = 0.2 + 0.6 * r();
      const little = Float32Array.from([c, (1 - c) * split, (1 - c) * (1 - split)]);
      const agrees = c > 0.55 || r() < 0.3;
      return { key: `k${i}`, little, big: peaked(agrees ? 0 : 1, 0.9) };
    });
  }
  const cal = table(400, 1, 0);
  // The test part is surer than the calibration part, so ranking it against itself would differ.
  const test = table(200, 2, 0.2);

  it('is the default guaranteed metric, certified at the full δ against the calibration part', () => {
    const out = calibrate(cal, test, costs, { targetAgreement: 0.9 });
    expect(out.options.metrics).toEqual(['rank']);
    expect(out.chosen.metric).toBe('rank');
    expect(out.chosen.guarantee).toMatchObject({ delta: 0.05, images: 400 });
    expect(out.chosen.reason).not.toMatch(/δ split/);
    const ref = rankReference(cal.map((e) => e.little));
    expect(out.rankReference).toEqual(ref);
    const kept = (part: CalibrationEntry[]) => part.filter((e) => rankConfidence(e.little, ref) >= out.chosen.threshold).length;
    expect(out.chosen.point.accepted).toBe(kept(cal));
    expect(out.test!.point.accepted).toBe(kept(test));
    expect(kept(test)).toBeGreaterThan(kept(cal) / 2);
  });

  it('writes the reference into calib.json with metric rank, and only then', () => {
    const models = { little: { name: 'l', path: 'l.onnx' }, big: { name: 'b', path: 'b.onnx' } };
    const extra = { calibrationFraction: 0.5, skippedImages: 0, files: { curveJson: 'c.json', curveCsv: 'c.csv', plot: 'c.svg' } };
    const file = calibrationFile(calibrate(cal, test, costs, { targetAgreement: 0.9 }), models, extra);
    expect(file.rankReference).toEqual(rankReference(cal.map((e) => e.little)));
    expect(CalibrationFile.parse(JSON.parse(JSON.stringify(file)))).toEqual(file);
    const margin = calibrationFile(calibrate(cal, test, costs, { targetAgreement: 0.9, metrics: ['margin', 'pnorm'] }), models, extra);
    expect(margin.metric).not.toBe('rank');
    expect(margin.rankReference).toBeUndefined();
    // A calib.json saying rank without its reference is not one calibrate wrote.
    const { rankReference: _, ...bare } = file;
    expect(CalibrationFile.safeParse(bare).success).toBe(false);
    // Chain calib files carry no reference, so they may not name rank.
    expect(ChainCalibrationFile.shape.metric.safeParse('rank').success).toBe(false);
  });
});

describe('rank in run specs', () => {
  const stage = (name: string, threshold: number | null | 'decided-at-warmup') => ({ name, model: fakePin(`${name}.onnx`), gmacsPerImage: 1, threshold });
  const spec = {
    runId: 'r1',
    source: '/in',
    out: '/out',
    metric: 'rank',
    rankReference: ref,
    batchSize: 4,
    stages: [stage('little', 0.5), stage('big', null)],
    ...RUN_DEFAULTS,
    createdAt: new Date(0).toISOString(),
  };
  const issues = (s: unknown) => RunSpec.safeParse(s).error?.issues.map((i) => i.message) ?? [];

  it('a worker never sees a rank run without its reference (unless self-calibrating: its decision carries one) or on more than two stages', () => {
    expect(issues(spec)).toEqual([]);
    const { rankReference: _, ...bare } = spec;
    expect(issues(bare)).toEqual([expect.stringMatching(/^metric rank comes from `cascade calibrate`/)]);
    expect(issues({ ...spec, stages: [stage('little', 0.5), stage('mid', 0.5), stage('big', null)] })).toEqual([expect.stringMatching(/little\/big pair/)]);
    const selfCalibration = { targetAgreement: 0.95, delta: 0.05 };
    expect(issues({ ...bare, stages: [stage('little', 'decided-at-warmup'), stage('big', null)], selfCalibration })).toEqual([]);
    expect(issues({ ...spec, selfCalibration })).toEqual([
      'a self-calibrating run builds its rank reference from its warm-up: it takes none from a config or calib.json',
    ]);
    // A schedule's template is held to the same rules.
    const { runId: _r, source: _s, out: _o, createdAt: _c, ...run } = bare;
    expect(ScheduleTemplate.safeParse({ schedule: 'nightly', source: '/in', out: '/out', extensions: ['.jpg'], run }).success).toBe(false);
    expect(
      ScheduleTemplate.safeParse({ schedule: 'nightly', source: '/in', out: '/out', extensions: ['.jpg'], run: { ...run, rankReference: ref } }).success,
    ).toBe(true);
  });
});
