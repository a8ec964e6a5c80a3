/**
 * The routing resolver: every stage's threshold, metric, reference and state from a run spec and
 * its stored decision — fixed, warm-up lane, pending, decided, refused, big-only — and what the
 * summary records of each.
 */
import { describe, expect, it } from 'vitest';
import type { RankReference } from '../../config/schema.js';
import { DECIDED_AT_WARMUP, needsDecision, recordedThreshold, resolveRouting, routable, type RoutedRun } from '../../pipeline/routing-resolver.js';
import { accepts } from '../../pipeline/routing.js';
import type { ThresholdDecision } from '../../pipeline/self-calibration.js';

const reference: RankReference = { margin: [0.1, 0.5, 0.9], pnorm: [0.2, 0.6, 0.8] };

const fixed: RoutedRun = {
  runId: 'r',
  metric: 'maxprob',
  stages: [
    { name: 'little', threshold: 0.7 },
    { name: 'big', threshold: null },
  ],
};
const selfCalibrating: RoutedRun = { ...fixed, stages: [{ name: 'little', threshold: DECIDED_AT_WARMUP }, fixed.stages[1]!] };
const selfCalibratingRank: RoutedRun = { ...selfCalibrating, metric: 'rank' };

const decidedAt = '2026-01-01T00:00:00.000Z';
const certified = (extra: Partial<ThresholdDecision> = {}): ThresholdDecision =>
  ({
    certified: true,
    target: 0.95,
    delta: 0.05,
    threshold: 0.62,
    bound: 0.96,
    accepted: 80,
    sample: 100,
    empiricalAgreement: 0.99,
    fractionAccepted: 0.8,
    decidedAt,
    route: 'cascade',
    ...extra,
  }) as ThresholdDecision;
const refused = (extra: Partial<ThresholdDecision> = {}): ThresholdDecision =>
  ({
    certified: false,
    target: 0.95,
    delta: 0.05,
    sample: 10,
    strongestCertifiable: null,
    imagesNeeded: 300,
    reason: 'too few images',
    decidedAt,
    route: 'big-only',
    ...extra,
  }) as ThresholdDecision;

describe('resolveRouting', () => {
  it('routes a fixed run by its spec: the first stage at its threshold, the last keeping every answer', () => {
    expect(resolveRouting(fixed, 0, null)).toEqual({ state: { kind: 'fixed' }, threshold: 0.7, metric: 'maxprob', rankReference: undefined });
    expect(resolveRouting(fixed, 1, null)).toEqual({ state: { kind: 'fixed' }, threshold: null, metric: 'maxprob', rankReference: undefined });
    expect(needsDecision(fixed, 0)).toBe(false);
    expect(needsDecision(fixed, 1)).toBe(false);
  });

  it('hands every stage but the last on unread under route big-only (a calibration verdict), without its decision', () => {
    const bigOnly: RoutedRun = { ...fixed, route: 'big-only' };
    expect(resolveRouting(bigOnly, 0, null)).toMatchObject({ state: { kind: 'fixed' }, threshold: 0.7, bigOnly: 'calibration-verdict' });
    expect(resolveRouting(bigOnly, 1, null)).not.toHaveProperty('bigOnly');
    expect(routable({ ...selfCalibrating, route: 'big-only' }, 0, null).bigOnly).toBe('calibration-verdict');
  });

  it('blocks a decided-at-warmup stage until its decision is stored, keeping nothing meanwhile', () => {
    const r = resolveRouting(selfCalibrating, 0, null);
    expect(r.state).toEqual({ kind: 'pending-warmup' });
    expect(r.threshold).toBe(Number.POSITIVE_INFINITY);
    expect(r.blocked).toBe('run r: an ordinary batch reached stage little before the threshold was decided');
    expect(() => routable(selfCalibrating, 0, null)).toThrow(/before the threshold was decided/);
    expect(needsDecision(selfCalibrating, 0)).toBe(true);
    expect(needsDecision(selfCalibrating, 1)).toBe(false);
    // The summary of a run that ended before its decision (an empty source) records the strictest threshold.
    expect(recordedThreshold(r)).toBe(1);
  });

  it('routes a certified decision at its threshold, and hands on unread when its route is big-only', () => {
    const d = certified();
    expect(routable(selfCalibrating, 0, d)).toEqual({ state: { kind: 'decided', decision: d }, threshold: 0.62, metric: 'maxprob', rankReference: undefined });
    const costly = certified({ route: 'big-only' });
    const r = routable(selfCalibrating, 0, costly);
    expect(r).toMatchObject({ state: { kind: 'decided' }, threshold: 0.62, bigOnly: 'warm-up-decision' });
    // The summary records the certified threshold even though the stage did not run.
    expect(recordedThreshold(r)).toBe(0.62);
  });

  it('keeps nothing on a refusal: +Infinity routes, 1 is only how summary.json writes it', () => {
    const r = routable(selfCalibrating, 0, refused());
    expect(r).toMatchObject({ state: { kind: 'refused' }, threshold: Number.POSITIVE_INFINITY, bigOnly: 'warm-up-decision' });
    // A refusal stored without a route (an older version) runs the first stage, which keeps nothing.
    const old = routable(selfCalibrating, 0, refused({ route: undefined }));
    expect(old.bigOnly).toBeUndefined();
    // 1 would keep a confidence of exactly 1, which maxprob and rank reach; +Infinity keeps none.
    expect(accepts(1, old.threshold!)).toBe(false);
    expect(accepts(1, 1)).toBe(true);
    expect(recordedThreshold(old)).toBe(1);
    expect(JSON.stringify({ threshold: old.threshold })).toBe('{"threshold":null}');
  });

  it('ranks a self-calibrating rank run against its decided reference, at every stage', () => {
    const d = certified({ metric: 'rank', rankReference: reference });
    expect(routable(selfCalibratingRank, 0, d)).toMatchObject({ threshold: 0.62, metric: 'rank', rankReference: reference });
    expect(routable(selfCalibratingRank, 1, d)).toMatchObject({ threshold: null, metric: 'rank', rankReference: reference });
    expect(needsDecision(selfCalibratingRank, 1)).toBe(true);
    expect(() => routable(selfCalibratingRank, 1, null)).toThrow('run r: metric rank, but its threshold and reference are not decided yet');
    // A decision stored before rank could be self-calibrated has no reference: never routed without one.
    expect(() => routable(selfCalibratingRank, 1, certified())).toThrow(/has no rank reference \(stored by an older version\)/);
    // A refusal whose warm-up had no answers has no reference: the last stage scores by margin.
    expect(routable(selfCalibratingRank, 1, refused({ metric: 'rank', sample: 0 }))).toMatchObject({ metric: 'margin' });
    // A rank run from a calibration file carries its reference in the spec and needs no decision.
    const fromCalib: RoutedRun = { ...fixed, metric: 'rank', rankReference: reference };
    expect(needsDecision(fromCalib, 0)).toBe(false);
    expect(resolveRouting(fromCalib, 0, null)).toMatchObject({ threshold: 0.7, metric: 'rank', rankReference: reference });
  });

  it('labels the warm-up lane keeping every answer, a self-calibrating rank run by margin', () => {
    expect(resolveRouting(selfCalibrating, 0, null, 'warmup')).toEqual({
      state: { kind: 'warmup-lane' },
      threshold: null,
      metric: 'maxprob',
      rankReference: undefined,
    });
    expect(resolveRouting(selfCalibratingRank, 1, null, 'warmup')).toEqual({ state: { kind: 'warmup-lane' }, threshold: null, metric: 'margin' });
    // The lane ignores big-only: the warm-up is what decides it.
    expect(resolveRouting({ ...selfCalibrating, route: 'big-only' }, 0, null, 'warmup')).not.toHaveProperty('bigOnly');
  });
});
