/** N-stage calibration on synthetic probability tables with known answers. */
import { describe, expect, it } from 'vitest';
import { calibrateChain, type ChainEntry, type ChainPoint, evaluateChain } from '../../pipeline/calibration/chain.js';
import { costlierThanLast } from '../../cli/commands/calibrate-chain.js';
import { confidence } from '../../pipeline/routing.js';
import { peaked } from '../helpers/probabilities.js';
import type { ConfidenceMetric } from '../../config/schema.js';

const stages = [
  { name: 'tiny', gmacsPerImage: 1 },
  { name: 'small', gmacsPerImage: 3 },
  { name: 'big', gmacsPerImage: 10 },
];
// 4 images tiny gets (sure, right); 3 only small gets (sure, right); 2 only big gets. Truth = big's answer.
const entries: ChainEntry[] = [
  ...[0, 1, 2, 3].map((i) => ({ key: `t${i}`, rows: [peaked(0, 0.9), peaked(0, 0.6), peaked(0, 0.9)], label: 0 })),
  ...[0, 1, 2].map((i) => ({ key: `s${i}`, rows: [peaked(0, 0.4), peaked(1, 0.9), peaked(1, 0.9)], label: 1 })),
  ...[0, 1].map((i) => ({ key: `b${i}`, rows: [peaked(0, 0.4), peaked(0, 0.5), peaked(2, 0.9)], label: 2 })),
];

describe('calibrateChain', () => {
  it('label-free: each stage keeps exactly the images where it agrees with big', () => {
    const out = calibrateChain(stages, entries, { rule: 'label-free', targetAgreement: 1, metrics: ['maxprob'] });
    expect(out.thresholds.map((t) => Math.fround(t))).toEqual([Math.fround(0.9), Math.fround(0.9)]);
    expect(out.point.reached).toEqual([9, 5, 2]);
    expect(out.point.kept).toEqual([4, 3, 2]);
    expect(out.point.gmacsPerImage).toBeCloseTo(1 + (5 / 9) * 3 + (2 / 9) * 10);
    expect(out.point.agreement).toBe(1);
    expect(out.point.accuracy).toBe(1);
    expect(out.point.lastAccuracy).toBe(1);
  });

  it('no-loss and TinySaver give the same chain here; metrics are compared and the cheapest kept', () => {
    // Under every metric, each stage's threshold is its kept images' confidence (those of a sure
    // row, peaked(c, 0.9)), which the images it passes on (0.4, 0.5 and 0.6 rows) stay below.
    const sure = (metric: ConfidenceMetric) => confidence(peaked(0, 0.9), metric);
    for (const rule of ['no-loss', 'tinysaver'] as const) {
      const out = calibrateChain(stages, entries, { rule });
      expect(out.point.kept).toEqual([4, 3, 2]);
      expect(out.metric).toBe('maxprob');
      expect(out.thresholds).toEqual([sure('maxprob'), sure('maxprob')]);
      expect(Object.fromEntries(Object.entries(out.perMetric).map(([m, p]) => [m, p.thresholds]))).toEqual({
        maxprob: [sure('maxprob'), sure('maxprob')],
        margin: [sure('margin'), sure('margin')],
        entropy: [sure('entropy'), sure('entropy')],
      });
      expect(Object.keys(out.perMetric).sort()).toEqual(['entropy', 'margin', 'maxprob']);
      for (const m of Object.values(out.perMetric)) expect(out.point.gmacsPerImage).toBeLessThanOrEqual(m.gmacsPerImage);
    }
  });

  it('a stage no image reaches gets threshold 1, and says so', () => {
    const easy = entries.slice(0, 4);
    const out = calibrateChain(stages, easy, { rule: 'label-free', targetAgreement: 1, metrics: ['maxprob'] });
    expect(out.thresholds[1]).toBe(1);
    expect(out.reasons[1]).toMatch(/no calibration image reaches small/);
    expect(out.point.reached).toEqual([4, 0, 0]);
  });

  it('a middle stage that never helps is capped at threshold 1 with a hint to drop it', () => {
    const useless = entries.map((e) => ({ ...e, rows: [e.rows[0]!, peaked(2, 0.95), e.rows[2]!] }));
    const out = calibrateChain(stages, useless, { rule: 'label-free', targetAgreement: 1, metrics: ['maxprob'] });
    expect(out.thresholds[1]).toBe(1);
    expect(out.reasons[1]).toMatch(/this stage could be dropped/);
  });

  it('partial labels: the labeled rules refuse with the names', () => {
    const partial = entries.map((e, i) => (i === 5 ? { key: e.key, rows: e.rows } : e));
    expect(() => calibrateChain(stages, partial, { rule: 'no-loss' })).toThrow(/needs a ground-truth label for every image/);
  });
});

describe('evaluateChain', () => {
  it('walks images through fixed thresholds', () => {
    const allTiny = evaluateChain(stages, entries, 'maxprob', [0, 0]);
    expect(allTiny.kept).toEqual([9, 0, 0]);
    expect(allTiny.accuracy).toBeCloseTo(4 / 9);
    expect(allTiny.agreement).toBeCloseTo(4 / 9);
    expect(allTiny.saved).toBeCloseTo(0.9);
    const allBig = evaluateChain(stages, entries, 'maxprob', [1, 1]);
    expect(allBig.reached).toEqual([9, 9, 9]);
    expect(allBig.gmacsPerImage).toBe(14);
  });

  it('checks its inputs', () => {
    expect(() => evaluateChain(stages, entries, 'maxprob', [0.5])).toThrow('3 stages need 2 thresholds, got 1');
    expect(() => evaluateChain(stages, [{ key: 'x', rows: [peaked(0, 1)] }], 'maxprob', [0, 0])).toThrow('image "x" has 1 probability rows for 3 stages');
    expect(() => evaluateChain(stages.slice(0, 1), entries, 'maxprob', [])).toThrow('a chain needs at least 2 stages');
  });
});

describe('costlierThanLast', () => {
  const point = (saved: number) => ({ saved }) as ChainPoint;

  it('warns, naming the earlier stages, when the chain costs more than its last stage alone', () => {
    expect(costlierThanLast(point(-0.117), ['squeezenet', 'mobilenetv2', 'ensemble'])).toEqual([
      '  warning: this chain costs 11.70% more than ensemble alone on the calibration half; try it without squeezenet or mobilenetv2, or a --rule that is not guaranteed',
    ]);
  });

  it('says nothing when the chain saves compute, or breaks even', () => {
    expect(costlierThanLast(point(0.3), ['a', 'b', 'c'])).toEqual([]);
    expect(costlierThanLast(point(0), ['a', 'b'])).toEqual([]);
  });
});
