/**
 * Deferral signals of issue 18 part 3: the p-norm max-logit (the routing metric `pnorm`) on
 * hand-computed rows, and the logistic deferral model's fit on separable data.
 */
import { describe, expect, it } from 'vitest';
import { deferralFeatures, fitLogistic, logisticConfidence } from '../../bench/deferral-signals.js';
import { confidence, PNORM_P, pNormMaxLogit } from '../../pipeline/routing.js';

describe('pNormMaxLogit', () => {
  it('is max(z_c)/‖z_c‖_p of the centred log-probabilities', () => {
    // log [0.5, 0.25, 0.25] centred is ln2 · [2/3, −1/3, −1/3] ∝ [2, −1, −1].
    const row = Float32Array.from([0.5, 0.25, 0.25]);
    expect(pNormMaxLogit(row, 2)).toBeCloseTo(2 / Math.sqrt(6), 6);
    expect(pNormMaxLogit(row, 8)).toBeCloseTo(2 / 258 ** (1 / 8), 6);
    expect(confidence(row, 'pnorm')).toBeCloseTo(2 / 258 ** (1 / 8), 6);
    expect(PNORM_P).toBe(8);
  });

  it('a flat row is the least confident (0); an underflowed zero is clamped, not -Infinity', () => {
    expect(pNormMaxLogit(Float32Array.from([0.25, 0.25, 0.25, 0.25]), 8)).toBe(0);
    const c = pNormMaxLogit(Float32Array.from([1, 0, 0]), 8);
    expect(c).toBeCloseTo(2 / 258 ** (1 / 8), 6); // centred [2, −1, −1]·ln(1e30)/3
    expect(pNormMaxLogit([1], 8)).toBe(1);
  });

  it('orders rows like a confidence: a peaked row above a spread one', () => {
    expect(pNormMaxLogit(Float32Array.from([0.9, 0.05, 0.05]), 8)).toBeGreaterThan(pNormMaxLogit(Float32Array.from([0.5, 0.4, 0.1]), 8));
  });
});

describe('logistic deferral model', () => {
  it('features are the sorted top-k and the normalised entropy', () => {
    const f = deferralFeatures(Float32Array.from([0.1, 0.6, 0.3]), 2);
    expect(f[0]).toBeCloseTo(0.6, 6);
    expect(f[1]).toBeCloseTo(0.3, 6);
    const h = -(0.1 * Math.log(0.1) + 0.6 * Math.log(0.6) + 0.3 * Math.log(0.3)) / Math.log(3);
    expect(f[2]).toBeCloseTo(h, 6);
  });

  it('fits a one-feature rule: P(agree) rises with the feature and crosses 0.5 at the boundary', () => {
    const x = Array.from({ length: 40 }, (_, i) => [i / 40]);
    // Overlapping classes around 0.5 keep the fit finite.
    const y = x.map(([v], i) => v! > 0.5 || (v! > 0.4 && i % 2 === 0));
    const m = fitLogistic(x, y);
    expect(m.weights[0]).toBeGreaterThan(0);
    expect(logisticConfidence(m, [0.9])).toBeGreaterThan(0.9);
    expect(logisticConfidence(m, [0.1])).toBeLessThan(0.1);
  });
});
