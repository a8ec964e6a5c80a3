/**
 * The chain's guaranteed rule (pipeline/calibration/chain-risk.ts): a synthetic chain with a
 * known answer, coverage over seeded resamples of a fixed population judged on the population,
 * the one-line refusal, and the label-free path.
 */
import { describe, expect, it } from 'vitest';
import { seeded } from '../../bench/stats.js';
import { CalibrationRefused } from '../../pipeline/calibration/calibrate.js';
import type { ChainEntry } from '../../pipeline/calibration/chain.js';
import { certifyChain, chainLevels, chainPath } from '../../pipeline/calibration/chain-risk.js';
import { confidence, topK } from '../../pipeline/routing.js';
import { peaked } from '../helpers/probabilities.js';

const stages = [
  { name: 'tiny', gmacsPerImage: 1 },
  { name: 'small', gmacsPerImage: 3 },
  { name: 'big', gmacsPerImage: 10 },
];

// 100 images tiny is sure of and right (0.9); 100 tiny is unsure of and wrong (0.34) but small is
// sure of and right (0.95); 200 both are half sure of and wrong (tiny 0.6, small 0.4).
// Tiny's confidences, highest first: 0.9 ×100, 0.6 ×200, 0.34 ×100; small's: 0.95 ×100, 0.9 ×100, 0.4 ×200.
// Levels 1–100 (q ≤ 1/4): thresholds [0.9, 0.95]: tiny keeps its 100, small the other 100, no loss.
// Level 101: tiny's threshold drops to 0.6 and tiny keeps the 200 it gets wrong.
const known: ChainEntry[] = [
  ...Array.from({ length: 100 }, (_, i) => ({ key: `a${i}`, rows: [peaked(0, 0.9), peaked(0, 0.9), peaked(0, 0.9)] })),
  ...Array.from({ length: 100 }, (_, i) => ({ key: `b${i}`, rows: [peaked(0, 0.34), peaked(1, 0.95), peaked(1, 0.9)] })),
  ...Array.from({ length: 200 }, (_, i) => ({ key: `h${i}`, rows: [peaked(0, 0.6), peaked(0, 0.4), peaked(2, 0.9)] })),
];

describe('certifyChain', () => {
  it('certifies the known chain at the last level before tiny starts keeping what it gets wrong', () => {
    const out = certifyChain(stages, known, { targetAgreement: 0.95, delta: 0.05, metrics: ['maxprob'] });
    expect(out.rule).toBe('guaranteed');
    expect(out.metric).toBe('maxprob');
    expect(out.thresholds).toEqual([Math.fround(0.9), Math.fround(0.95)]);
    expect(out.point.kept).toEqual([100, 100, 200]);
    expect(out.point.gmacsPerImage).toBeCloseTo(1 + (300 / 400) * 3 + (200 / 400) * 10);
    expect(out.guarantee).toMatchObject({
      method: 'ltt',
      delta: 0.05,
      kind: 'agreement',
      level: 0.95,
      bound: 0.95,
      images: 400,
      accepted: 200,
      quantile: 0.25,
    });
    expect(out.guarantee.promise).toBe(
      'with probability ≥ 0.95, agreement with big on new images from the same distribution that an earlier stage keeps is ≥ 95.00%',
    );
    expect(out.reasons[1]).toMatch(/^small: maxprob ≥ 0\.9500, the top 25\.00% of its confidences on the calibration images/);
  });

  it('compares metrics at δ / their number and keeps the cheapest that certifies', () => {
    const both = certifyChain(stages, known, { targetAgreement: 0.95, delta: 0.05, metrics: ['maxprob', 'margin'] });
    expect(Object.keys(both.perMetric).sort()).toEqual(['margin', 'maxprob']);
    for (const m of Object.values(both.perMetric)) expect(both.point.gmacsPerImage).toBeLessThanOrEqual(m.gmacsPerImage);
    expect(both.point.kept).toEqual([100, 100, 200]);
    // The default compares margin and pnorm; pnorm is the same on every peaked row, so its first
    // testable level accepts everything at tiny and fails: margin alone certifies.
    const byDefault = certifyChain(stages, known, { targetAgreement: 0.95, delta: 0.05 });
    expect(byDefault.metric).toBe('margin');
    expect(Object.keys(byDefault.perMetric)).toEqual(['margin']);
    expect(byDefault.point.kept).toEqual([100, 100, 200]);
  });

  it('stops at the first failure even where a looser level would pass again (losses need not fall along the path)', () => {
    // A 2-stage chain: tiny is sure and right on 100, less sure and wrong on 50, then right on 400.
    // Level 100 passes (0 of 100); level 150 fails (50 of 150); the loosest, 50 of 550 = 9.1%, would pass at α = 15%.
    const two = [stages[0]!, stages[2]!];
    const rows = (p: number, cls: number) => ({ key: `${p}-${cls}`, rows: [peaked(cls, p), peaked(0, 0.9)] });
    const entries = [
      ...Array.from({ length: 100 }, () => rows(0.9, 0)),
      ...Array.from({ length: 50 }, () => rows(0.8, 1)),
      ...Array.from({ length: 400 }, () => rows(0.7, 0)),
    ];
    const out = certifyChain(two, entries, { targetAgreement: 0.85, delta: 0.05, metrics: ['maxprob'] });
    expect(out.thresholds).toEqual([Math.fround(0.9)]);
    expect(out.guarantee).toMatchObject({ accepted: 100, quantile: 100 / 550 });
    expect(chainLevels(two, entries, 'maxprob').at(-1)).toMatchObject({ accepted: 550, losses: 50 });
  });

  it('refuses in one line naming the strongest certifiable target and roughly the images needed', () => {
    let err: unknown;
    try {
      certifyChain(stages, known, { targetAgreement: 0.99, delta: 0.05, metrics: ['maxprob'] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CalibrationRefused);
    expect((err as CalibrationRefused).exitCode).toBe(1);
    // 200 loss-free images pass α ≥ 1 − 0.05^(1/200) = 1.49%, i.e. 98.5%; 99% needs ≥ 299 kept, at half the images kept: 598.
    expect((err as Error).message).toBe(
      'guaranteed rule refused: 400 calibration images cannot certify agreement with big ≥ 99.0% on images an earlier stage keeps at δ = 0.05 ' +
        "(ltt along the chain's quantile path); the strongest it certifies is 98.5%; 99.0% needs roughly 598 images. " +
        'Lower --target-agreement, add calibration images, or choose a point-estimate rule (--rule label-free) knowing it holds about half the time',
    );
  });

  it('checks its arguments', () => {
    expect(() => certifyChain(stages, known, { targetAgreement: 0, delta: 0.05 })).toThrow('target agreement must be in (0, 1], got 0');
    expect(() => certifyChain(stages, known, { targetAgreement: 0.9, delta: 1 })).toThrow('delta must be in (0, 1), got 1');
  });
});

describe('the path', () => {
  it('is label-free: other answers from the last stage and other labels leave every threshold and accepted count as they were', () => {
    const r = seeded(3);
    const flipped = known.map((e) => ({ ...e, rows: [e.rows[0]!, e.rows[1]!, peaked(Math.floor(r() * 3), 0.9)], label: 2 }));
    for (const metric of ['maxprob', 'margin', 'pnorm'] as const) {
      expect(chainPath(stages, flipped, metric)).toEqual(chainPath(stages, known, metric));
      const before = chainLevels(stages, known, metric);
      const after = chainLevels(stages, flipped, metric);
      expect(after.map((l) => l.accepted)).toEqual(before.map((l) => l.accepted));
      expect(after.map((l) => l.losses)).not.toEqual(before.map((l) => l.losses));
    }
  });

  it('runs strictest to loosest, thresholds in [0, 1] and non-increasing; counts match walking the images', () => {
    const levels = chainLevels(stages, known, 'maxprob');
    expect(levels).toHaveLength(400);
    expect(levels[0]!.quantile).toBe(1 / 400);
    expect(levels[399]!.quantile).toBe(1);
    for (let j = 1; j < levels.length; j++) {
      for (let k = 0; k < 2; k++) {
        expect(levels[j]!.thresholds[k]!).toBeLessThanOrEqual(levels[j - 1]!.thresholds[k]!);
        expect(levels[j]!.thresholds[k]!).toBeGreaterThanOrEqual(0);
        expect(levels[j]!.thresholds[k]!).toBeLessThanOrEqual(1);
      }
    }
    for (const j of [0, 99, 100, 250, 399]) {
      const walked = early(known, levels[j]!.thresholds, 'maxprob');
      expect([levels[j]!.accepted, levels[j]!.losses]).toEqual([walked.accepted, walked.losses]);
    }
    expect(levels[399]).toMatchObject({ accepted: 400, losses: 300 });
    // Images that small keeps first and tiny later (either one right) move their loss with them.
    const random = synthetic(500, seeded(5));
    const randomLevels = chainLevels(stages, random, 'maxprob');
    for (let j = 0; j < 500; j += 7) {
      const walked = early(random, randomLevels[j]!.thresholds, 'maxprob');
      expect([j, randomLevels[j]!.accepted, randomLevels[j]!.losses]).toEqual([j, walked.accepted, walked.losses]);
    }
  });
});

/** Images a stage before the last accepts under `thresholds`, and how many of those disagree with the last stage. */
function early(entries: readonly ChainEntry[], thresholds: readonly number[], metric: 'maxprob'): { accepted: number; losses: number } {
  let accepted = 0;
  let losses = 0;
  for (const e of entries) {
    const last = e.rows.length - 1;
    const k = thresholds.findIndex((t, i) => confidence(e.rows[i]!, metric) >= t);
    if (k < 0) continue;
    accepted++;
    if (topK(e.rows[k]!, 1)[0] !== topK(e.rows[last]!, 1)[0]) losses++;
  }
  return { accepted, losses };
}

/**
 * n images; each non-last stage's maxprob is 1/3 + (2/3)c for c ~ U(0, 1), and it disagrees with
 * big with probability 0.5(1 − c)² (tiny) or 0.3(1 − c)² (small).
 */
function synthetic(n: number, r: () => number): ChainEntry[] {
  const row = (agrees: boolean, big: number, c: number) => peaked(agrees ? big : (big + 1) % 3, 1 / 3 + (2 / 3) * c);
  return Array.from({ length: n }, (_, i) => {
    const big = Math.floor(r() * 3);
    const c0 = r();
    const c1 = r();
    return { key: `p${i}`, rows: [row(r() >= 0.5 * (1 - c0) ** 2, big, c0), row(r() >= 0.3 * (1 - c1) ** 2, big, c1), peaked(big, 0.9)] };
  });
}

describe('coverage over seeded resamples of a fixed population', () => {
  // A population of 20 000 synthetic() images. Each sample
  // draws 1000 images with replacement; the promise fails when the agreement with big on the
  // images the chosen thresholds accept early, over the whole population, is below the target.
  const r = seeded(18);
  const population = synthetic(20_000, r);
  const target = 0.95;
  const delta = 0.05;
  const samples = 200;
  // Each stage's confidence and whether it agrees with big, once, so that judging is a quick loop.
  const judged = population.map((e) =>
    e.rows.slice(0, 2).map((row) => ({ c: confidence(row, 'maxprob'), agrees: topK(row, 1)[0] === topK(e.rows[2]!, 1)[0] })),
  );
  /** Agreement with big over the population's images a stage before it accepts. */
  const agreement = (thresholds: readonly number[]): number => {
    let accepted = 0;
    let agreeing = 0;
    for (const stagesOf of judged) {
      const s = stagesOf.find((st, k) => st.c >= thresholds[k]!);
      if (!s) continue;
      accepted++;
      if (s.agrees) agreeing++;
    }
    return agreeing / accepted;
  };

  it('the promise fails in at most δ + 2 pp of samples; the loosest level whose sample agreement reaches the target fails in far more', () => {
    let certified = 0;
    let fails = 0;
    let pointFails = 0;
    for (let s = 0; s < samples; s++) {
      const sample = Array.from({ length: 1000 }, () => population[Math.floor(r() * population.length)]!);
      // The point estimate on the same path, for contrast.
      const levels = chainLevels(stages, sample, 'maxprob');
      const point = levels.filter((l) => l.accepted > 0 && 1 - l.losses / l.accepted >= target).at(-1)!;
      if (agreement(point.thresholds) < target) pointFails++;
      try {
        const out = certifyChain(stages, sample, { targetAgreement: target, delta, metrics: ['maxprob'] });
        certified++;
        if (agreement(out.thresholds) < target) fails++;
      } catch (err) {
        if (!(err instanceof CalibrationRefused)) throw err;
      }
    }
    expect(certified).toBeGreaterThan(samples * 0.9); // not vacuous: it certifies nearly always
    expect(fails / certified).toBeLessThanOrEqual(delta + 0.02);
    expect(pointFails / samples).toBeGreaterThan(0.3);
  });
});
