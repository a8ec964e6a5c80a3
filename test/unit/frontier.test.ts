/**
 * The frontier's pure logic (pipeline/cost/frontier.ts): dominance with ties, which configurations
 * are tried, what a configuration costs, and a three-model chain losing to the pair that skips
 * its middle model, on hand-made probability rows whose every routing decision is known.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRICES, type Prices } from '../../config/schema.js';
import type { ChainEntry } from '../../pipeline/calibration/chain.js';
import { chainCost, chainsUpTo, dominanceSentences, dominates, evaluateFrontier, type FrontierModel, paretoFrontier } from '../../pipeline/cost/frontier.js';

// One unit per core-second, so the price of a million images reads as microseconds per image.
const PER_SECOND: Prices = { cpu: 3600, gpu: 7200, currency: 'USD' };
const cpu = (name: string, seconds: number): FrontierModel => ({
  name,
  gmacsPerImage: seconds,
  timing: { decodeSeconds: seconds / 2, inferSeconds: seconds / 2, workerClass: 'cpu' },
});

describe('paretoFrontier', () => {
  it('keeps exact ties both on the frontier and lets a tie on one axis dominate when better on the other', () => {
    const v = paretoFrontier([
      { id: 'a', cost: 1, quality: 0.8 },
      { id: 'a-twin', cost: 1, quality: 0.8 },
      { id: 'same-cost-worse', cost: 1, quality: 0.7 },
      { id: 'same-quality-dearer', cost: 2, quality: 0.8 },
      { id: 'mid', cost: 4, quality: 0.86 },
      { id: 'best', cost: 5, quality: 0.9 },
      { id: 'dear-worse', cost: 6, quality: 0.85 },
    ]);
    const by = Object.fromEntries(v.map((x) => [x.id, x]));
    expect(by.a).toEqual({ id: 'a', onFrontier: true, dominatedBy: null });
    expect(by['a-twin']!.onFrontier).toBe(true);
    expect(by['same-cost-worse']).toMatchObject({ onFrontier: false, dominatedBy: 'a' });
    expect(by['same-quality-dearer']).toMatchObject({ onFrontier: false, dominatedBy: 'a' });
    expect(by.best!.onFrontier).toBe(true);
    // Dominated by mid and best: the cheaper one is named.
    expect(by.mid!.onFrontier).toBe(true);
    expect(by['dear-worse']).toMatchObject({ onFrontier: false, dominatedBy: 'mid' });
    expect(dominates({ id: 'x', cost: 1, quality: 1 }, { id: 'y', cost: 1, quality: 1 })).toBe(false);
  });
});

describe('chainsUpTo and chainCost', () => {
  it('tries every model, every pair cheaper → dearer and every chain up to the length', () => {
    expect(chainsUpTo(3, 3)).toEqual([[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]);
    expect(chainsUpTo(4, 2)).toHaveLength(4 + 6);
  });

  it('charges each stage its decode and inference for the images that reach it, GPU inference at the GPU price', () => {
    const gpu: FrontierModel = { name: 'g', gmacsPerImage: 1, timing: { decodeSeconds: 0.01, inferSeconds: 0.002, workerClass: 'gpu' } };
    const c = chainCost([cpu('a', 0.02), gpu], [1, 0.25], DEFAULT_PRICES);
    expect(c.secondsPerImage).toBeCloseTo(0.02 + 0.25 * 0.012, 12);
    const usd = (0.02 * 0.045 + 0.25 * (0.01 * 0.045 + 0.002 * 2.5)) / 3600;
    expect(c.pricePerMillion).toBeCloseTo(usd * 1e6, 9);
  });
});

/**
 * Three models a (1 s), b (2 s), c (10 s) and two kinds of image. Easy ones: a and b are sure
 * (0.9) and right. Hard ones: a and b are unsure (0.6, 0.55) and wrong, c is right. At maxprob
 * ≥ 0.8 the hard half goes on from a and from b, so a → b → c spends b's 2 s on half the images
 * and still ends at c: the pair a → c gives the same answers for less.
 */
function table(n: number, labeled: boolean, models: readonly number[] = [0, 1, 2]): ChainEntry[] {
  const easy = [new Float32Array([0.9, 0.1]), new Float32Array([0.9, 0.1]), new Float32Array([0.95, 0.05])];
  const hard = [new Float32Array([0.6, 0.4]), new Float32Array([0.55, 0.45]), new Float32Array([0.1, 0.9])];
  return Array.from({ length: n }, (_, i) => ({
    key: `img-${i}`,
    rows: models.map((m) => (i % 2 === 0 ? easy : hard)[m]!),
    ...(labeled ? { label: i % 2 === 0 ? 0 : 1 } : {}),
  }));
}

describe('evaluateFrontier', () => {
  const models = [cpu('a', 1), cpu('b', 2), cpu('c', 10)];

  it('finds a chain dominated by the pair that skips its middle model', () => {
    const result = evaluateFrontier({
      models,
      calibration: table(8, true),
      test: [],
      rule: { kind: 'fixed', metric: 'maxprob', threshold: 0.8 },
      prices: PER_SECOND,
    });
    expect(result.quality).toBe('top-1');
    const row = Object.fromEntries(result.rows.map((r) => [r.config, r]));
    expect(row['a → b → c']).toMatchObject({ reach: [1, 0.5, 0.5], quality: 1, verdict: 'dominated', dominatedBy: 'a → c' });
    expect(row['a → b → c']!.secondsPerImage).toBeCloseTo(1 + 0.5 * 2 + 0.5 * 10, 12);
    expect(row['a → c']).toMatchObject({ reach: [1, 0.5], quality: 1, verdict: 'frontier', secondsPerImage: 6, pricePerMillion: 6e6 });
    expect(row.a).toMatchObject({ quality: 0.5, verdict: 'frontier' });
    expect(row.c).toMatchObject({ quality: 1, verdict: 'dominated', dominatedBy: 'a → c' });
    expect(row['a → b']).toMatchObject({ quality: 0.5, verdict: 'dominated', dominatedBy: 'a' });
    expect(dominanceSentences(result)).toContain(
      'a → b → c at maxprob ≥ 0.8, 0.8 is dominated by a → c at maxprob ≥ 0.8: it costs 1.17× as much for top-1 100.0% vs 100.0%',
    );
  });

  it('judges by agreement with the dearest model without labels, on the test entries', () => {
    const result = evaluateFrontier({
      models,
      calibration: table(4, false),
      test: table(6, false),
      rule: { kind: 'fixed', metric: 'maxprob', threshold: 0.8 },
      prices: PER_SECOND,
    });
    expect(result).toMatchObject({ quality: 'agreement with c', images: 6 });
    expect(result.rows.find((r) => r.config === 'c')!.quality).toBe(1);
    expect(result.rows.find((r) => r.config === 'a')!.quality).toBe(0.5);
  });

  it('certifies thresholds on the calibration entries, and marks a chain the sample cannot certify as refused', () => {
    const certified = evaluateFrontier({
      models: [models[0]!, models[2]!],
      calibration: table(400, false, [0, 2]),
      test: table(10, false, [0, 2]),
      rule: { kind: 'guaranteed', targetAgreement: 0.95, delta: 0.05 },
      prices: PER_SECOND,
    });
    const pair = certified.rows.find((r) => r.config === 'a → c')!;
    expect(pair).toMatchObject({ verdict: 'frontier', reach: [1, 0.5], quality: 1 });
    const refused = evaluateFrontier({
      models: [models[0]!, models[2]!],
      calibration: table(6, false, [0, 2]),
      test: table(6, false, [0, 2]),
      rule: { kind: 'guaranteed', targetAgreement: 0.95, delta: 0.05 },
      prices: PER_SECOND,
    });
    expect(refused.rows.find((r) => r.config === 'a → c')).toMatchObject({ verdict: 'refused', quality: null });
    expect(refused.rows.find((r) => r.config === 'a → c')!.note).toMatch(/^guaranteed rule refused: 6 calibration images/);
  });
});
