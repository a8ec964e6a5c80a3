/** Audit sampling, pure: the deterministic sample of accepted images, and the agreement summary with its drift flag. */
import { describe, expect, it } from 'vitest';
import { isAudited } from '../../pipeline/audit/audit-sample.js';
import { summarizeAudit } from '../../pipeline/audit/audit-summary.js';
import { wilsonInterval } from '../../pipeline/calibration/wilson.js';

describe('audit sample', () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => `s3://bucket/photos/${i}.jpg`);

  it('is a fixed function of run id, seed and key, close to the fraction', () => {
    const picked = keys.filter((k) => isAudited('run-a', '', k, 0.02));
    expect(keys.filter((k) => isAudited('run-a', '', k, 0.02))).toEqual(picked);
    // 20 000 draws at p = 0.02: the binomial sd is 19.8, so ±100 is five sd.
    expect(picked.length).toBeGreaterThan(300);
    expect(picked.length).toBeLessThan(500);
    const otherSeed = keys.filter((k) => isAudited('run-a', 'x', k, 0.02));
    const otherRun = keys.filter((k) => isAudited('run-b', '', k, 0.02));
    expect(otherSeed).not.toEqual(picked);
    expect(otherRun).not.toEqual(picked);
  });

  it('audits nothing at 0 and everything at 1, and a larger fraction keeps the smaller sample', () => {
    expect(keys.some((k) => isAudited('r', '', k, 0))).toBe(false);
    expect(keys.every((k) => isAudited('r', '', k, 1))).toBe(true);
    const small = new Set(keys.filter((k) => isAudited('r', '', k, 0.01)));
    const large = new Set(keys.filter((k) => isAudited('r', '', k, 0.05)));
    for (const k of small) expect(large.has(k)).toBe(true);
  });
});

describe('audit summary', () => {
  it('flags drift when the Wilson upper bound is below the promise', () => {
    const s = summarizeAudit({ sampled: 16, agreeing: 13 }, 1, 0.99);
    const w = wilsonInterval(13, 16);
    expect(s).toEqual({ fraction: 1, sampled: 16, agreeing: 13, agreement: 13 / 16, wilson: { low: w.low, high: w.high }, promised: 0.99, drift: true });
    expect(w.high).toBeLessThan(0.99);
  });

  it('no drift when the interval reaches the promise, when nothing was promised, or nothing sampled', () => {
    expect(summarizeAudit({ sampled: 12, agreeing: 12 }, 0.5, 0.99).drift).toBe(false);
    const unpromised = summarizeAudit({ sampled: 16, agreeing: 1 }, 0.5);
    expect(unpromised.drift).toBe(false);
    expect(unpromised).not.toHaveProperty('promised');
    expect(summarizeAudit({ sampled: 0, agreeing: 0 }, 0.02, 0.99)).toMatchObject({ agreement: 0, wilson: { low: 0, high: 1 }, drift: false });
  });
});
