/**
 * Choosing a threshold from cached probabilities: the sweep over every threshold, the selection
 * rules (TinySaver, no-loss, label-free, best metric), the Wilson interval, judging a pick on the
 * test half with the oracle bound, calibrate() end to end on tables, and the saver ranking.
 */
import { describe, expect, it } from 'vitest';
import { peaked } from '../helpers/probabilities.js';
import type { ConfidenceMetric } from '../../config/schema.js';
import { accepts, confidence, topK } from '../../pipeline/routing.js';
import { type CalibrationEntry, type CurvePoint, SEND_ALL_THRESHOLD, sweepThresholds } from '../../pipeline/calibration/sweep.js';
import { bestMetric, labelFreeRule, noLossRule, tinySaverRule } from '../../pipeline/calibration/select.js';
import { wilsonInterval } from '../../pipeline/calibration/wilson.js';
import { CalibrationRefused, calibrate } from '../../pipeline/calibration/calibrate.js';
import { modelAccuracy, oracleBound, pointAt } from '../../pipeline/calibration/evaluate.js';
import { searchSaver } from '../../pipeline/calibration/saver-search.js';
import { seeded } from '../../bench/stats.js';

const f = Math.fround; // confidences come from Float32Array rows
const row = (...p: number[]): Float32Array => Float32Array.from(p);
const costs = { littleGmacs: 1, bigGmacs: 10 };

// Hand-built table (maxprob). conf, little ok?, big ok?, agree?
//   a 0.9  L✓ B✓ agree   | b 0.8 L✓ B✗ — | c 0.8 L✗ B✓ — | d 0.6 L✗ B✓ — | e 0.5 L✓ B✓ agree
const handTable: CalibrationEntry[] = [
  { key: 'a', little: row(0.9, 0.05, 0.05), big: peaked(0, 0.9), label: 0 },
  { key: 'b', little: row(0.8, 0.1, 0.1), big: peaked(1, 0.8), label: 0 },
  { key: 'c', little: row(0.1, 0.8, 0.1), big: peaked(2, 0.7), label: 2 },
  { key: 'd', little: row(0.6, 0.3, 0.1), big: peaked(1, 0.6), label: 1 },
  { key: 'e', little: row(0.2, 0.5, 0.3), big: peaked(1, 0.9), label: 1 },
];

// A second table, for evaluation, calibrate() and the saver search.
// conf(maxprob) · little ok · big ok:  a .9 ✓✓ | b .8 ✓✗ | c .7 ✗✓ | d .6 ✗✓ | e .5 ✗✗
const table: CalibrationEntry[] = [
  { key: 'a', little: peaked(0, 0.9), big: peaked(0, 0.9), label: 0 },
  { key: 'b', little: peaked(0, 0.8), big: peaked(1, 0.8), label: 0 },
  { key: 'c', little: peaked(1, 0.7), big: peaked(2, 0.7), label: 2 },
  { key: 'd', little: peaked(0, 0.6), big: peaked(1, 0.6), label: 1 },
  { key: 'e', little: peaked(0, 0.5), big: peaked(1, 0.6), label: 2 },
];

describe('sweepThresholds', () => {
  it('matches a hand computation, with a tie in confidence (b, c at 0.8)', () => {
    const curve = sweepThresholds(handTable, 'maxprob', costs);
    const pick = (p: CurvePoint) => [
      p.threshold,
      p.accepted,
      p.agreeing,
      p.fractionToBig,
      p.littleCorrectOnAccepted,
      p.bigCorrectOnAccepted,
      p.cascadeAccuracy,
      p.gmacsPerImage,
    ];
    // Σ big correct = 4 (a, c, d, e); cascade = (littleCorrect + 4 − bigCorrect) / 5.
    expect(curve.map(pick)).toEqual([
      [0, 5, 2, 0, 3, 4, 0.6, 1],
      [f(0.5), 5, 2, 0, 3, 4, 0.6, 1],
      [f(0.6), 4, 1, 0.2, 2, 3, 0.6, 3],
      [f(0.8), 3, 1, 0.4, 2, 2, 0.8, 5],
      [f(0.9), 1, 1, 0.8, 1, 1, 0.8, 9],
      [SEND_ALL_THRESHOLD, 0, 0, 1, 0, 0, 0.8, 11],
    ]);
    expect(curve[3]!.littleAccuracyOnAccepted).toBeCloseTo(2 / 3, 12);
    expect(curve[2]!.bigAccuracyOnAccepted).toBe(0.75);
    expect(curve[2]!.agreement).toBe(0.25);
    const sendAll = curve[5]!;
    expect(sendAll.agreement).toBe(1);
    expect(sendAll.littleAccuracyOnAccepted).toBeNull();
    expect(sendAll.bigAccuracyOnAccepted).toBeNull();
    expect(curve.missingLabels).toEqual({ count: 0, sampleKeys: [] });
  });

  it('rejects empty tables, logits and mismatched class counts', () => {
    expect(() => sweepThresholds([], 'maxprob', costs)).toThrow(/empty/);
    expect(() => sweepThresholds([{ key: 'x', little: row(3, 1), big: row(0.5, 0.5) }], 'maxprob', costs)).toThrow(/"x".*logits/);
    expect(() => sweepThresholds([{ key: 'y', little: row(0.5, 0.5), big: row(1, 0, 0) }], 'maxprob', costs)).toThrow(/"y" has 2 little and 3 big/);
  });

  it('agrees with a brute-force O(n²) reference on a random table with many ties, for every metric', () => {
    const rand = seeded(12345);
    const C = 4;
    const table: CalibrationEntry[] = [];
    // Integer weights → few distinct probability rows → many confidence ties.
    const randomRow = (): Float32Array => {
      const w = Array.from({ length: C }, () => 1 + Math.floor(rand() * 5));
      const s = w.reduce((a, b) => a + b, 0);
      return Float32Array.from(w.map((x) => x / s));
    };
    for (let i = 0; i < 400; i++) {
      table.push({ key: `k${i}`, little: randomRow(), big: randomRow(), label: Math.floor(rand() * C) });
    }
    for (const metric of ['maxprob', 'margin', 'entropy'] as ConfidenceMetric[]) {
      const curve = sweepThresholds(table, metric, costs);
      const expectedThresholds = [...new Set([0, SEND_ALL_THRESHOLD, ...table.map((e) => confidence(e.little, metric))])].sort((a, b) => a - b);
      expect(curve.map((p) => p.threshold)).toEqual(expectedThresholds);
      expect(curve.length).toBeLessThan(table.length); // ties really happened
      for (const p of curve) expect(p).toEqual(bruteForce(table, metric, p.threshold));
    }
  });

  it('handles 100k images quickly (would time out if quadratic)', () => {
    const rand = seeded(7);
    const table: CalibrationEntry[] = Array.from({ length: 100_000 }, (_, i) => {
      const p = 0.34 + 0.66 * rand();
      return { key: `k${i}`, little: peaked(i % 3, p), big: peaked(i % 3, 0.9), label: i % 3 };
    });
    const curve = sweepThresholds(table, 'maxprob', costs);
    expect(curve[0]!.accepted).toBe(100_000);
    expect(curve.at(-1)!.accepted).toBe(0);
  });
});

describe('tinySaverRule', () => {
  it('descends until little is less accurate than big on what it keeps', () => {
    const s = tinySaverRule(sweepThresholds(handTable, 'maxprob', costs));
    // 0.9: 1 ≥ 1; 0.8: 2 ≥ 2; 0.6: 2 < 3 → stop.
    expect(s.rule).toBe('tinysaver');
    expect(s.threshold).toBe(f(0.8));
    expect(s.point.fractionToBig).toBe(0.4);
    expect(s.reason).toMatch(/3 images/);
  });

  it('stops at the first violation even if lower thresholds would hold again', () => {
    const table: CalibrationEntry[] = [
      { key: 'x', little: peaked(0, 0.9), big: peaked(1, 0.9), label: 1 }, // little wrong, big right
      { key: 'y', little: peaked(0, 0.8), big: peaked(1, 0.9), label: 0 }, // little right, big wrong
      { key: 'z', little: peaked(0, 0.7), big: peaked(1, 0.9), label: 0 }, // little right, big wrong
    ];
    const s = tinySaverRule(sweepThresholds(table, 'maxprob', costs));
    expect(s.threshold).toBe(SEND_ALL_THRESHOLD);
    expect(s.point.fractionToBig).toBe(1);
  });

  it('all-confident: keeps everything at the minimum confidence (not the equivalent 0)', () => {
    const table: CalibrationEntry[] = [
      { key: 'a', little: peaked(0, 0.9), big: peaked(0, 0.9), label: 0 },
      { key: 'b', little: peaked(1, 0.7), big: peaked(1, 0.9), label: 1 },
      { key: 'c', little: peaked(2, 0.8), big: peaked(2, 0.9), label: 2 },
    ];
    const curve = sweepThresholds(table, 'maxprob', costs);
    for (const p of curve.filter((q) => q.threshold <= f(0.7))) expect(p.accepted).toBe(3);
    const s = tinySaverRule(curve);
    expect(s.threshold).toBe(f(0.7));
    expect(s.point.fractionToBig).toBe(0);
    expect(s.point.gmacsPerImage).toBe(1);
    expect(noLossRule(curve, 1).threshold).toBe(f(0.7));
  });

  it('never-confident: little always wrong → send all to big', () => {
    const table: CalibrationEntry[] = [0.9, 0.6, 0.4].map((p, i) => ({
      key: `n${i}`,
      little: peaked(0, p),
      big: peaked(1, 0.9),
      label: 1,
    }));
    const curve = sweepThresholds(table, 'maxprob', costs);
    const s = tinySaverRule(curve);
    expect(s.threshold).toBe(SEND_ALL_THRESHOLD);
    expect(s.point).toMatchObject({ accepted: 0, fractionToBig: 1, gmacsPerImage: 11, cascadeAccuracy: 1 });
    expect(s.reason).toMatch(/send all to big/);
    expect(noLossRule(curve, 1).threshold).toBe(SEND_ALL_THRESHOLD);
  });
});

describe('noLossRule', () => {
  const curve = sweepThresholds(handTable, 'maxprob', costs);
  it('picks the cheapest point at big accuracy', () => {
    // Big accuracy 4/5 = 0.8; points at ≥ 0.8: thresholds 2, 0.9, 0.8 → 0.8 sends least.
    const s = noLossRule(curve, 0.8);
    expect(s.threshold).toBe(f(0.8));
    expect(s.point.cascadeAccuracy).toBe(0.8);
  });
  it('with an allowed drop, ties in fractionToBig go to the higher threshold', () => {
    // All points ≥ 0.6; fractionToBig 0 at both 0 and 0.5 → 0.5.
    const s = noLossRule(curve, 0.8, 0.2);
    expect(s.threshold).toBe(f(0.5));
    expect(s.point.fractionToBig).toBe(0);
  });
  it('throws when even send-all cannot reach the target', () => {
    expect(() => noLossRule(curve, 0.95)).toThrow(/no threshold reaches/);
  });
});

describe('labels missing', () => {
  const table: CalibrationEntry[] = handTable.map((e, i) => (i === 2 ? e : { key: e.key, little: e.little, big: e.big }));
  const curve = sweepThresholds(table, 'maxprob', costs);
  it('the sweep still runs, with null accuracies', () => {
    expect(curve.missingLabels).toEqual({ count: 4, sampleKeys: ['a', 'b', 'd'] });
    for (const p of curve) {
      expect(p.cascadeAccuracy).toBeNull();
      expect(p.littleAccuracyOnAccepted).toBeNull();
    }
  });
  it('labeled rules throw a clear error naming count and up to 3 keys', () => {
    expect(() => tinySaverRule(curve)).toThrow('tinysaver rule needs a ground-truth label for every image, but 4 of 5 lack one (e.g. "a", "b", "d", …)');
    expect(() => noLossRule(curve, 0.8)).toThrow(/no-loss rule .* 4 of 5 lack one/);
    expect(() => bestMetric(table, costs, tinySaverRule)).toThrow(/4 of 5 lack one/);
  });
  it('the label-free rule still works', () => {
    expect(labelFreeRule(curve, 1).threshold).toBe(f(0.9));
  });
});

describe('wilsonInterval', () => {
  it('95/100 matches the hand computation', () => {
    // p=0.95, z²=3.8416, denom=1.038416, centre=0.969208/denom=0.933354,
    // half=1.96·√(0.000475+0.00009604)/denom=0.045104 → [0.888250, 0.978458].
    const w = wilsonInterval(95, 100);
    expect(w.estimate).toBe(0.95);
    expect(w.low).toBeCloseTo(0.88825, 4);
    expect(w.high).toBeCloseTo(0.97846, 4);
  });
  it('edge cases', () => {
    expect(wilsonInterval(0, 0)).toEqual({ low: 0, high: 1, estimate: 0.5 });
    const one = wilsonInterval(1, 1); // centre = 2.9208/4.8416, half = 1.96·0.98/4.8416
    expect(one.low).toBeCloseTo(0.20659, 4);
    expect(one.high).toBe(1);
    expect(wilsonInterval(0, 10).low).toBe(0);
    expect(() => wilsonInterval(3, 2)).toThrow(RangeError);
    expect(() => wilsonInterval(1.5, 2)).toThrow(RangeError);
  });
});

describe('labelFreeRule', () => {
  it('hand table: target 1 keeps only a; target 0.4 keeps all at the higher of two equivalent thresholds', () => {
    const curve = sweepThresholds(handTable, 'maxprob', costs);
    const s = labelFreeRule(curve, 1);
    expect(s).toMatchObject({ rule: 'label-free', threshold: f(0.9) });
    expect(s.point.accepted).toBe(1);
    expect(s.interval.low).toBeCloseTo(0.20659, 4);
    // agreement: 0.8 → 1/3, 0.6 → 1/4, 0.5 → 2/5.
    const t = labelFreeRule(curve, 0.4);
    expect(t.threshold).toBe(f(0.5));
    expect(t.point.fractionToBig).toBe(0);
  });

  it('95/100 agreement on the confident images, with the Wilson interval', () => {
    const table: CalibrationEntry[] = [];
    for (let i = 0; i < 100; i++) {
      table.push({ key: `c${i}`, little: peaked(0, 0.9), big: peaked(i < 95 ? 0 : 1, 0.8) });
    }
    for (let i = 0; i < 10; i++) table.push({ key: `u${i}`, little: peaked(0, 0.4), big: peaked(2, 0.8) });
    const s = labelFreeRule(sweepThresholds(table, 'maxprob', costs), 0.95);
    expect(s.threshold).toBe(f(0.9));
    expect(s.point).toMatchObject({ accepted: 100, agreeing: 95 });
    expect(s.point.fractionToBig).toBeCloseTo(10 / 110, 12);
    expect(s.interval.low).toBeCloseTo(0.888, 3);
    expect(s.interval.high).toBeCloseTo(0.978, 3);
    expect(s.reason).toMatch(/95\/100/);
  });

  it('never agreeing → send all to big with the uninformative interval', () => {
    const table = [{ key: 'a', little: peaked(0, 0.9), big: peaked(1, 0.9) }];
    const s = labelFreeRule(sweepThresholds(table, 'maxprob', costs), 0.5);
    expect(s.threshold).toBe(SEND_ALL_THRESHOLD);
    expect(s.interval).toEqual({ low: 0, high: 1, estimate: 0.5 });
  });
});

describe('bestMetric', () => {
  // p: maxprob 0.5, margin 0.05, entropy-conf ≈ 0.221 — disagrees with big.
  // q: maxprob 0.48, margin 0.22, entropy-conf ≈ 0.042 — agrees.   r: confident, agrees.
  const table: CalibrationEntry[] = [
    { key: 'p', little: row(0.5, 0.45, 0.05), big: peaked(1, 0.9), label: 1 },
    { key: 'q', little: row(0.48, 0.26, 0.26), big: peaked(0, 0.9), label: 0 },
    { key: 'r', little: row(0.9, 0.05, 0.05), big: peaked(0, 0.9), label: 0 },
  ];
  it('picks the metric that separates the disagreeing image (margin)', () => {
    const best = bestMetric(table, costs, (c) => labelFreeRule(c, 1));
    expect(best.metric).toBe('margin');
    expect(best.selection.threshold).toBe(f(0.48) - f(0.26));
    expect(best.selection.point.fractionToBig).toBeCloseTo(1 / 3, 12);
    expect(best.perMetric.maxprob!.point.fractionToBig).toBeCloseTo(2 / 3, 12);
    expect(best.perMetric.entropy!.point.fractionToBig).toBeCloseTo(2 / 3, 12);
  });
  it('works with labeled rules; full ties go to the first metric listed', () => {
    const best = bestMetric(table, costs, (c) => noLossRule(c, 1), ['entropy', 'maxprob']);
    // Both keep only r (little wrong on p) → tie → entropy, listed first.
    expect(best.metric).toBe('entropy');
    expect(best.selection.point.accepted).toBe(1);
    expect(Object.keys(best.perMetric)).toEqual(['entropy', 'maxprob']);
  });
});

function bruteForce(table: CalibrationEntry[], metric: ConfidenceMetric, t: number): CurvePoint {
  const n = table.length;
  let accepted = 0,
    agreeing = 0,
    lc = 0,
    bc = 0,
    cascade = 0;
  for (const e of table) {
    const lt = topK(e.little, 1)[0],
      bt = topK(e.big, 1)[0];
    if (accepts(confidence(e.little, metric), t)) {
      accepted++;
      if (lt === bt) agreeing++;
      if (lt === e.label) lc++;
      if (bt === e.label) bc++;
      if (lt === e.label) cascade++;
    } else if (bt === e.label) cascade++;
  }
  const fractionToBig = (n - accepted) / n;
  return {
    threshold: t,
    total: n,
    accepted,
    agreeing,
    fractionToBig,
    agreement: accepted === 0 ? 1 : agreeing / accepted,
    littleCorrectOnAccepted: lc,
    bigCorrectOnAccepted: bc,
    littleAccuracyOnAccepted: accepted === 0 ? null : lc / accepted,
    bigAccuracyOnAccepted: accepted === 0 ? null : bc / accepted,
    cascadeAccuracy: cascade / n,
    gmacsPerImage: costs.littleGmacs + fractionToBig * costs.bigGmacs,
  };
}

describe('evaluation', () => {
  it('pointAt judges a fixed threshold on another table', () => {
    const p = pointAt(table, 'maxprob', 0.75, costs);
    expect([p.threshold, p.accepted, p.fractionToBig, p.cascadeAccuracy]).toEqual([0.75, 2, 0.6, 0.8]); // a, b kept (both right) + c, d right by big
    expect(pointAt(table, 'maxprob', 0.95, costs).accepted).toBe(0);
    expect(pointAt(table, 'maxprob', 2, costs).fractionToBig).toBe(1);
    expect(pointAt(table, 'maxprob', 0, costs).accepted).toBe(5);
  });

  it('model accuracies and the oracle bound', () => {
    expect(modelAccuracy(table, 'little')).toBe(0.4);
    expect(modelAccuracy(table, 'big')).toBe(0.6);
    // Oracle sends c and d (little wrong, big right): 2/5 to big, a b c d right.
    expect(oracleBound(table, costs)).toEqual({ fractionToBig: 0.4, accuracy: 0.8, gmacsPerImage: 5, saved: 0.5 });
    expect(modelAccuracy([{ ...table[0]!, label: undefined }], 'little')).toBeNull();
    expect(() => oracleBound([{ ...table[0]!, label: undefined }], costs)).toThrow('oracleBound: image "a" has no label');
  });
});

describe('calibrate', () => {
  it('no-loss with labels judges the pick on the test part; every rule is reported', () => {
    const out = calibrate(table, table.slice(0, 2), costs, { rule: 'no-loss', metrics: ['maxprob'] });
    expect(out.labeled).toBe(true);
    expect(out.chosen.rule).toBe('no-loss');
    // Big alone: 0.6. Keeping a, b, c leaves d (big right) and e (big wrong) to big: (2 + 1) / 5 = 0.6
    // at 40% to big — the cheapest point at 0.6 (keeping a..d or all gives 0.4).
    expect(out.chosen.point.fractionToBig).toBeCloseTo(0.4);
    expect(out.chosen.point.cascadeAccuracy).toBeCloseTo(0.6);
    expect(Object.keys(out.rules).sort()).toEqual(['guaranteed', 'guaranteed-drop', 'label-free', 'no-loss', 'tinysaver']);
    // Five images certify nothing: the guaranteed rules report why instead of a pick.
    expect(out.rules.guaranteed).toMatchObject({ error: expect.stringMatching(/^guaranteed rule refused: 5 calibration images cannot certify/) });
    expect(out.test?.images).toBe(2);
    expect(out.test?.point.threshold).toBe(out.chosen.threshold);
    expect(out.calibration.oracle?.saved).toBe(0.5);
  });

  it('without labels only the label-free rule applies', () => {
    const unlabeled = table.map(({ label: _l, ...e }) => e);
    const out = calibrate(unlabeled, [], costs, { rule: 'label-free', targetAgreement: 1 });
    expect(out.labeled).toBe(false);
    expect(Object.keys(out.rules)).toEqual(['guaranteed', 'label-free']);
    expect(out.chosen.rule).toBe('label-free');
    expect(out.chosen.point.accepted).toBe(1); // only a agrees
    expect(out.test).toBeNull();
  });

  it('labels missing for some images: a clear error unless the label-free rule is asked for', () => {
    const partial = table.map((e, i) => (i === 3 ? { key: e.key, little: e.little, big: e.big } : e));
    expect(() => calibrate(partial, [], costs, { rule: 'no-loss' })).toThrow(
      /no-loss rule needs a ground-truth label for every image, but 1 of 5 lack one \(e.g. "d"\)/,
    );
    expect(calibrate(partial, [], costs, { rule: 'label-free' }).chosen.rule).toBe('label-free');
  });

  it('defaults to the guaranteed rule: refuses what 5 images cannot certify (exit 1), certifies what they can', () => {
    expect(() => calibrate(table, [], costs)).toThrow(CalibrationRefused);
    // The default compares rank alone, at the full δ.
    expect(() => calibrate(table, [], costs)).toThrow(
      'guaranteed rule refused: 5 calibration images cannot certify agreement ≥ 99.0% at δ = 0.05 (ltt); it certifies no target of 50% or more; ' +
        '99.0% needs more images than this sample can estimate. Lower --target-agreement',
    );
    expect(() => calibrate(table, [], costs, { metrics: ['margin', 'pnorm'] })).toThrow(
      'guaranteed rule refused: 5 calibration images cannot certify agreement ≥ 99.0% at δ = 0.025 (ltt); it certifies no target of 50% or more; ' +
        '99.0% needs more images than this sample can estimate (δ split over 2 metrics: margin, pnorm)',
    );
    expect(new CalibrationRefused('x').exitCode).toBe(1);
    // 20 images that all agree: 0 of 20 passes P(Bin(20, α) = 0) ≤ 0.05 for α ≥ 1 − 0.05^(1/20) = 13.9%.
    const agreeing = Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, little: peaked(0, 0.5 + i / 50), big: peaked(0, 0.9) }));
    const out = calibrate(agreeing, [], costs, { targetAgreement: 0.85, metrics: ['maxprob'] });
    expect(out.chosen.rule).toBe('guaranteed');
    expect(out.chosen.guarantee).toMatchObject({ method: 'ltt', delta: 0.05, kind: 'agreement', level: 0.85, bound: 0.85, images: 20 });
    expect(out.chosen.point.accepted).toBe(20);
    expect(out.chosen.guarantee!.promise).toBe(
      'with probability ≥ 0.95, agreement with big on new images from the same distribution that the little model keeps is ≥ 85.00%',
    );
    // 20 of 20 agreeing: Wilson 95% is 83.9%–100%, 16 pp wide.
    expect(out.warnings).toEqual([
      'few images: the agreement on the 20 kept calibration images is 100.0%, but its 95% interval is 83.9%–100.0% (16.1% wide); expect new images to land anywhere in it',
    ]);
    expect(() => calibrate(agreeing, [], costs, { targetAgreement: 0.87, metrics: ['maxprob'] })).toThrow(/the strongest it certifies is 86\.\d%/);
  });

  it('rejects empty calibration parts and out-of-range settings', () => {
    expect(() => calibrate([], table, costs)).toThrow('calibrate: no calibration images');
    expect(() => calibrate(table, [], costs, { maxDrop: 2 })).toThrow('max drop must be in [0, 1], got 2');
    expect(() => calibrate(table, [], costs, { targetAgreement: 0 })).toThrow('target agreement must be in (0, 1], got 0');
  });
});

describe('searchSaver', () => {
  it('ranks cheaper candidates by expected GMACs and reports the rest', () => {
    const perfect = table.map((e) => ({ ...e, little: peaked(e.label!, 0.99) }));
    const results = searchSaver(
      [
        { name: 'weak', gmacsPerImage: 1, calibration: table, test: [] },
        { name: 'strong', gmacsPerImage: 2, calibration: perfect, test: [] },
        { name: 'too-big', gmacsPerImage: 10, calibration: table, test: [] },
        { name: 'empty', gmacsPerImage: 1, calibration: [], test: [] },
      ],
      10,
      { rule: 'no-loss' },
    );
    expect(results.map((r) => [r.name, r.status, r.status === 'ranked' ? r.rank : null])).toEqual([
      ['strong', 'ranked', 1], // keeps everything: 2 GMACs
      ['weak', 'ranked', 2], // sends 40% to big: 1 + 4 = 5 GMACs
      ['too-big', 'not-cheaper', null],
      ['empty', 'failed', null],
    ]);
  });
});
