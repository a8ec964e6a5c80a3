import { describe, expect, it } from 'vitest';
import { accepts, confidence, looksLikeProbabilities, predict, softmax, topK } from '../../pipeline/routing.js';

describe('softmax', () => {
  it('matches the closed form and is stable for large logits', () => {
    const p = softmax([1, 2, 3]);
    const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
    const s = e[0]! + e[1]! + e[2]!;
    e.forEach((v, i) => expect(p[i]).toBeCloseTo(v / s, 6));
    const big = softmax([1000, 1000]);
    expect(big[0]).toBeCloseTo(0.5, 6);
  });
});

describe('looksLikeProbabilities', () => {
  it('accepts distributions and rejects logits', () => {
    expect(looksLikeProbabilities([0.2, 0.3, 0.5])).toBe(true);
    expect(looksLikeProbabilities([2, -1, 0.5])).toBe(false);
    expect(looksLikeProbabilities([0.2, 0.2, 0.2])).toBe(false);
    expect(looksLikeProbabilities([NaN, 1])).toBe(false);
  });
});

describe('topK', () => {
  it('orders by value and keeps the lower index first on ties', () => {
    expect(topK([0.1, 0.5, 0.2, 0.5, 0.05], 3)).toEqual([1, 3, 2]);
    expect(topK([3, 1], 5)).toEqual([0, 1]);
  });
});

describe('confidence', () => {
  const p = [0.7, 0.2, 0.1];
  it('maxprob is the top probability', () => expect(confidence(p, 'maxprob')).toBeCloseTo(0.7));
  it('margin is top1 − top2', () => expect(confidence(p, 'margin')).toBeCloseTo(0.5));
  it('entropy is 1 − H/ln C', () => {
    const h = -(0.7 * Math.log(0.7) + 0.2 * Math.log(0.2) + 0.1 * Math.log(0.1));
    expect(confidence(p, 'entropy')).toBeCloseTo(1 - h / Math.log(3), 6);
    expect(confidence([1 / 3, 1 / 3, 1 / 3], 'entropy')).toBeCloseTo(0, 6);
    expect(confidence([1, 0, 0], 'entropy')).toBeCloseTo(1, 6);
  });
});

describe('accepts', () => {
  it('accepts at exactly the threshold and rejects below', () => {
    expect(accepts(0.5, 0.5)).toBe(true);
    expect(accepts(0.4999, 0.5)).toBe(false);
  });
});

describe('predict', () => {
  it('returns label, confidence and top-5 in order', () => {
    const r = predict([0.05, 0.6, 0.1, 0.05, 0.1, 0.1], 'maxprob');
    expect(r.label).toBe(1);
    expect(r.confidence).toBeCloseTo(0.6);
    expect(r.top5.map((t) => t.label)).toEqual([1, 2, 4, 5, 0]);
  });
});
