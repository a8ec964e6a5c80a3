/** A run's cost from its parts' measured seconds: per stage, big-only, saving and money. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRICES, Prices } from '../../config/schema.js';
import { addPartCost, emptyCostTotals, partCost, priceOf, runCost } from '../../pipeline/cost/run-cost.js';
import { formatCost, formatMoney } from '../../cli/format-summary.js';

describe('partCost', () => {
  it('splits measured seconds by the wall time of decode and inference', () => {
    const c = partCost('cpu', 2, { fetchMs: 100, decodeMs: 300, inferMs: 400 }, 7);
    expect(c).toEqual({ workerClass: 'cpu', seconds: 2, decodeSeconds: 1, inferSeconds: 1, decoded: 7 });
  });

  it('puts everything on inference when nothing was timed', () => {
    expect(partCost('gpu', 0.5, { fetchMs: 0, decodeMs: 0, inferMs: 0 }, 0)).toMatchObject({ decodeSeconds: 0, inferSeconds: 0.5 });
  });
});

describe('runCost', () => {
  it('measures big-only from a last stage that decoded its own images (a fleet)', () => {
    const t = emptyCostTotals(['little', 'big']);
    // little: 100 images at 10 ms (4 of decode); big: 20 images at 50 ms, its own decodes included.
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 1, decodeSeconds: 0.4, inferSeconds: 0.6, decoded: 100 }, 100);
    addPartCost(t[1]!, { workerClass: 'cpu', seconds: 1, decodeSeconds: 0.1, inferSeconds: 0.9, decoded: 20 }, 20);
    const c = runCost(t, 100, DEFAULT_PRICES);
    expect(c.seconds).toBe(2);
    expect(c.bigOnlySeconds).toBeCloseTo(5, 12);
    expect(c.saved).toBeCloseTo(0.6, 12);
    expect(c.bigOnlyBasis).toBe('measured');
    expect(c.price?.used).toBeCloseTo(priceOf(2, 'cpu', DEFAULT_PRICES), 15);
    expect(c.price?.bigOnly).toBeCloseTo((5 / 3600) * 0.045, 15);
  });

  it('adds the first stage decode rate for images the last stage took as tensors handed on', () => {
    const t = emptyCostTotals(['little', 'big']);
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 1, decodeSeconds: 0.4, inferSeconds: 0.6, decoded: 100 }, 100);
    addPartCost(t[1]!, { workerClass: 'cpu', seconds: 0.8, decodeSeconds: 0, inferSeconds: 0.8, decoded: 0 }, 20);
    const c = runCost(t, 100, DEFAULT_PRICES);
    // 40 ms of inference + 4 ms of decode per image, over 100 images.
    expect(c.bigOnlySeconds).toBeCloseTo(4.4, 12);
    expect(c.bigOnlyBasis).toBe('decode-from-first-stage');
  });

  it('prices each stage at its worker class and counts parts without figures as unknown', () => {
    const prices = Prices.parse({ cpu: 0.1, gpu: 3.6, currency: 'EUR' });
    const t = emptyCostTotals(['little', 'big']);
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 36, decodeSeconds: 10, inferSeconds: 26, decoded: 10 }, 10);
    addPartCost(t[0]!, undefined, 10);
    addPartCost(t[1]!, { workerClass: 'gpu', seconds: 10, decodeSeconds: 0, inferSeconds: 10, decoded: 10 }, 10);
    const c = runCost(t, 20, prices);
    expect(c.unknownParts).toBe(1);
    expect(c.price).toMatchObject({ currency: 'EUR' });
    expect(c.price!.used).toBeCloseTo((36 / 3600) * 0.1 + (10 / 3600) * 3.6, 12);
    expect(c.stages.map((s) => s.workerClass)).toEqual(['cpu', 'gpu']);
    expect(formatCost(c)).toMatch(/cost unknown for 1 part/);
  });

  it('has no big-only when no image reached the last stage', () => {
    const t = emptyCostTotals(['little', 'big']);
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 1, decodeSeconds: 0.5, inferSeconds: 0.5, decoded: 10 }, 10);
    const c = runCost(t, 10, DEFAULT_PRICES);
    expect(c).toMatchObject({ bigOnlySeconds: null, saved: null, bigOnlyBasis: 'none' });
    expect(formatCost(c)).toMatch(/big-only unknown/);
  });
});

describe('formatCost', () => {
  it('leads with machine time, big-only, the saving and money', () => {
    const t = emptyCostTotals(['little', 'big']);
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 20, decodeSeconds: 8, inferSeconds: 12, decoded: 1000 }, 1000);
    addPartCost(t[1]!, { workerClass: 'cpu', seconds: 21.2, decodeSeconds: 1.2, inferSeconds: 20, decoded: 200 }, 200);
    expect(formatCost(runCost(t, 1000, DEFAULT_PRICES))).toBe('  cost: 41.2 core-s vs 106.0 big-only, 61.1% saved ($0.00052 vs $0.0013)');
  });

  it('says so when the cascade costs more than big alone', () => {
    const t = emptyCostTotals(['little', 'big']);
    addPartCost(t[0]!, { workerClass: 'cpu', seconds: 10, decodeSeconds: 5, inferSeconds: 5, decoded: 100 }, 100);
    addPartCost(t[1]!, { workerClass: 'cpu', seconds: 9, decodeSeconds: 3, inferSeconds: 6, decoded: 90 }, 90);
    expect(formatCost(runCost(t, 100, DEFAULT_PRICES))).toMatch(/-90\.0% \(costs more than big alone\)/);
  });

  it('formats small and large amounts', () => {
    expect(formatMoney(0.000523, 'USD')).toBe('$0.00052');
    expect(formatMoney(12.5, 'CHF')).toBe('12.50 CHF');
    expect(formatMoney(0, 'EUR')).toBe('€0.00');
  });
});

describe('Prices', () => {
  it('refuses negative, non-numeric and unknown-currency prices', () => {
    expect(Prices.safeParse({ cpu: -1 }).success).toBe(false);
    expect(Prices.safeParse({ gpu: '2' }).success).toBe(false);
    expect(Prices.safeParse({ currency: 'XYZ' }).success).toBe(false);
    expect(Prices.parse({})).toEqual(DEFAULT_PRICES);
  });
});
