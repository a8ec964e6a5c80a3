/**
 * The cost verdict: the cheapest configuration that meets the target, at measured costs. A
 * dominated pair gives big-only, a cheap enough cascade wins, and a chain can lose to a pair
 * certified on the same images.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRICES, Prices } from '../../config/schema.js';
import type { ChainEntry, ChainPoint } from '../../pipeline/calibration/chain.js';
import { chainVerdict, type MeasuredModel, pairVerdict } from '../../pipeline/cost/verdict.js';
import { peaked } from '../helpers/probabilities.js';

const model = (name: string, decodeMs: number, inferMs: number, workerClass: 'cpu' | 'gpu' = 'cpu'): MeasuredModel => ({
  name,
  workerClass,
  decodeSeconds: decodeMs / 1000,
  inferSeconds: inferMs / 1000,
  source: 'probe',
});

describe('pairVerdict', () => {
  it('a cascade that keeps too few images costs more than big alone: big-only', () => {
    // The outside quick start's shape: little 10.7 ms, big 15.4 ms, half the images to big.
    const v = pairVerdict(
      model('shufflenet', 5.2, 5.5),
      model('mobilenetv2', 5.4, 10),
      { fractionToBig: 0.54, meets: true, label: 'rank ≥ 0.54' },
      DEFAULT_PRICES,
    );
    expect(v.verdict).toBe('big-only');
    expect(v.expectedCostSaving).toBe(0);
    expect(v.candidates.find((c) => c.kind === 'cascade')).toMatchObject({ meetsTarget: true });
    expect(v.candidates.find((c) => c.kind === 'cascade')!.secondsPerImage).toBeCloseTo(0.0107 + 0.54 * 0.0154, 12);
    expect(v.reason).toMatch(/run the big model alone/);
  });

  it('a cascade that keeps most images at the little model wins, with its expected saving', () => {
    const v = pairVerdict(
      model('mobilenetv2', 5.4, 10),
      model('ensemble', 5.7, 44),
      { fractionToBig: 0.156, meets: true, label: 'rank ≥ 0.16' },
      DEFAULT_PRICES,
    );
    expect(v.verdict).toBe('cascade');
    const cascade = 0.0154 + 0.156 * 0.0497;
    expect(v.expectedCostSaving).toBeCloseTo(1 - cascade / 0.0497, 12);
  });

  it('compares money across worker classes: a GPU big model is dear per second', () => {
    // 2 ms of GPU for big against 12 ms of CPU for little: in seconds the cascade loses, in money it wins.
    const little = model('little', 4, 8);
    const big = model('big', 0, 2, 'gpu');
    const prices = Prices.parse({ cpu: 0.045, gpu: 2.5 });
    expect(pairVerdict(little, big, { fractionToBig: 0.3, meets: true, label: 't' }, prices).verdict).toBe('cascade');
  });

  it('a certified threshold that keeps every image makes the little model alone the verdict', () => {
    const v = pairVerdict(model('little', 2, 2), model('big', 2, 20), { fractionToBig: 0, meets: true, label: 't' }, DEFAULT_PRICES);
    expect(v.verdict).toBe('single-model');
  });

  it('never picks a cascade that costs as much as big alone', () => {
    const v = pairVerdict(model('little', 0, 5), model('big', 0, 10), { fractionToBig: 0.5, meets: true, label: 't' }, DEFAULT_PRICES);
    expect(v.verdict).toBe('big-only');
  });
});

describe('chainVerdict', () => {
  it('a chain whose first stage keeps little loses to the pair without it', () => {
    // Stage 0 (weak, 6 ms) is equally unsure of every image and wrong on 40%; stage 1 (8 ms) is
    // sure of 80% and agrees with the last stage (40 ms) there, and wrong on the rest. The chain pays for stage 0 on every
    // image; the pair 1 → 2 does not.
    const calibration: ChainEntry[] = Array.from({ length: 400 }, (_, i) => {
      const sure = i % 5 !== 0;
      const weakRight = i % 5 > 1;
      return { key: `k${i}`, rows: [peaked(weakRight ? i % 3 : (i + 1) % 3, 0.4), sure ? peaked(i % 3, 0.99) : peaked((i + 1) % 3, 0.4), peaked(i % 3, 0.99)] };
    });
    const point: ChainPoint = {
      images: 400,
      reached: [400, 400, 80],
      kept: [0, 320, 80],
      gmacsPerImage: 0,
      saved: 0,
      agreement: 1,
      agreementInterval: { low: 0.99, high: 1, estimate: 1 },
      accuracy: null,
      lastAccuracy: null,
    };
    const models = [model('weak', 3, 3), model('mid', 3, 5), model('big', 3, 37)];
    const v = chainVerdict(models, point, calibration, { meets: true, label: 'margin ≥ …', targetAgreement: 0.95, delta: 0.05, prices: DEFAULT_PRICES });
    expect(v.verdict).toBe('cascade');
    expect(v.candidates.map((c) => c.config)).toContain(v.candidates.find((c) => c.config.startsWith('mid → big'))!.config);
    const chosen = v.candidates.filter((c) => c.meetsTarget).sort((a, b) => a.pricePerImage - b.pricePerImage)[0]!;
    expect(chosen.config).toMatch(/^mid → big/);
    const chain = v.candidates.find((c) => c.config.startsWith('weak → mid → big'))!;
    expect(chain.secondsPerImage).toBeCloseTo(0.006 + 0.008 + 0.2 * 0.04, 12);
    expect(chosen.pricePerImage).toBeLessThan(chain.pricePerImage);
    expect(v.reason).toMatch(/^mid → big/);
  });
});
