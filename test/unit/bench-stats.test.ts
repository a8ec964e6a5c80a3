/** bench/stats.ts: the median, slope and table helpers the benchmarks report with. */
import { describe, expect, it } from 'vitest';
import { median, slope, table } from '../../bench/stats.js';

describe('bench stats', () => {
  it('median, slope and a padded table', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(slope([0, 1, 2], [1, 3, 5])).toBeCloseTo(2, 12);
    expect(table(['a', 'b'], [['x', 1.234]])).toBe('a     b\n-  ----\nx  1.23');
  });
});
