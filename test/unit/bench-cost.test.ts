/**
 * The arithmetic of `npm run bench -- cost` (bench/cost.ts): reading a process tree's CPU time
 * from bash's `times`, the marginal cost per image from two run sizes, and the ideal saving of a
 * cascade from probe timings.
 */
import { describe, expect, it } from 'vitest';
import { childCpuSeconds, idealFraction, marginal } from '../../bench/cost.js';
import type { ModelTiming } from '../../pipeline/cost/model-timing.js';

const timing = (decodeSeconds: number, inferSeconds: number): ModelTiming => ({
  sha256: 'a'.repeat(64),
  numerics: 'exact',
  provider: 'cpu',
  workerClass: 'cpu',
  cpu: 'x64 [avx2]',
  decodeSeconds,
  inferSeconds,
  images: 32,
  batchSize: 32,
  measuredAt: '2026-01-01T00:00:00.000Z',
  source: 'probe',
});

describe('bench cost arithmetic', () => {
  it("adds the children's user and system time from bash's times output", () => {
    expect(childCpuSeconds('0m0.010s 0m0.002s\n1m2.500s 0m0.250s\n')).toBeCloseTo(62.75, 12);
    expect(() => childCpuSeconds('nonsense')).toThrow(/cannot read CPU times/);
  });

  it('takes the fixed start-up cost out by the difference of two run sizes', () => {
    // 4 s to start, then 50 ms wall and 80 ms CPU per image.
    const at = (n: number) => ({ wall: 4 + 0.05 * n, cpu: 3 + 0.08 * n });
    const m = marginal(at(200), at(20), 200, 20);
    expect(m.wall).toBeCloseTo(0.05, 12);
    expect(m.cpu).toBeCloseTo(0.08, 12);
  });

  it('prices a cascade against big alone with one shared decode, or a decode per stage', () => {
    const f = idealFraction(timing(0.005, 0.005), timing(0.006, 0.044), 0.2);
    expect(f.sharedDecode).toBeCloseTo((0.006 + 0.005 + 0.2 * 0.044) / 0.05, 12);
    expect(f.ownDecode).toBeCloseTo((0.005 + 0.005 + 0.2 * 0.05) / 0.05, 12);
  });
});
