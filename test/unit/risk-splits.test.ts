import { describe, expect, it } from 'vitest';
import { evaluateSplits } from '../../bench/risk-splits.js';
import { seeded } from '../../bench/stats.js';
import type { CalibrationEntry } from '../../pipeline/calibration/sweep.js';

/**
 * The two views of the issue-18 evaluation on a synthetic labeled pool: three classes, the little
 * model's top-1 probability c ~ U(0.4, 1), and it disagrees with big with probability 0.5(1 − c)².
 */
function pool(n: number, seed: number): CalibrationEntry[] {
  const r = seeded(seed);
  return Array.from({ length: n }, (_, i) => {
    const c = 0.4 + 0.6 * r();
    const agrees = r() >= 0.5 * (1 - c) ** 2;
    const rest = (1 - c) / 2;
    // Slightly unequal runners-up so margin and pnorm differ from maxprob.
    const little = Float32Array.from([c, rest * 1.2, rest * 0.8]);
    const big = Float32Array.from(agrees ? [0.9, 0.05, 0.05] : [0.05, 0.9, 0.05]);
    return { key: `img${i}`, little, big, label: agrees ? 0 : 1 };
  });
}

const rules = [
  { name: 'point', kind: 'point' as const, signal: 'maxprob' },
  { name: 'ltt', kind: 'ltt' as const, signal: 'maxprob' },
];

describe('evaluateSplits views', () => {
  const table = pool(700, 11);
  const costs = { littleGmacs: 0.1, bigGmacs: 1 };
  const common = { splits: 200, fraction: 0.5, delta: 0.05, targets: [0.95], drops: [], rules, seed: 18 };

  it('population view: samples drawn with replacement are judged on the whole pool; LTT fails in ≤ δ + 2 pp, the point rule about half the time', () => {
    const r = evaluateSplits(table, costs, { ...common, view: 'population' });
    expect(r.view).toBe('population');
    expect(r.calibrationImages).toBe(350);
    expect(r.testImages).toBe(700);
    const ltt = r.agreement.find((a) => a.rule === 'ltt')!;
    const point = r.agreement.find((a) => a.rule === 'point')!;
    expect(ltt.certified).toBe(200);
    // Seeded, so the counts are exact: LTT misses once (0.5% ≤ δ), the point rule 96 times (48%).
    expect(ltt.certified - ltt.held).toBe(1);
    expect((ltt.certified - ltt.held) / r.splits).toBeLessThanOrEqual(0.07);
    // Judged on the population, the point rule's promise is a coin flip.
    expect((point.certified - point.held) / r.splits).toBeGreaterThan(0.3);
    // Every sample is judged on the same population, so its hindsight-best saving is one number.
    expect(new Set(r.hindsight['0.95']!.maxprob).size).toBe(1);
  });

  it("split view: disjoint halves judged on the test half, whose own noise makes LTT's population promise look broken", () => {
    const r = evaluateSplits(table, costs, common);
    expect(r.view).toBe('split');
    expect(r.testImages).toBe(350);
    expect(new Set(r.hindsight['0.95']!.maxprob).size).toBeGreaterThan(1);
    // The same LTT that misses its population promise once in 200 samples misses the test half
    // 14 times (7% > δ): the gap is the protocol, not the procedure (docs/results.md, issue 18).
    const ltt = r.agreement.find((a) => a.rule === 'ltt')!;
    expect(ltt.certified - ltt.held).toBe(14);
  });
});
