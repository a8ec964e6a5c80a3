/**
 * The cost meter on a clock the test moves by hand, so every share is exact: a job alone gets
 * all the time that passed, concurrent jobs split each interval by the work they have in flight
 * (equally when none reports any), idle time is nobody's.
 */
import { describe, expect, it } from 'vitest';
import { CostMeter } from '../../pipeline/cost/cost-meter.js';

function manualClock() {
  let t = 100;
  return { clock: () => t, advance: (s: number) => (t += s) };
}

describe('CostMeter', () => {
  it('gives a job alone exactly the time that passed while it ran', () => {
    const { clock, advance } = manualClock();
    const meter = new CostMeter(clock);
    advance(5); // idle before: nobody's
    const a = meter.begin();
    advance(2.5);
    expect(meter.end(a)).toBe(2.5);
    advance(7); // idle after
    expect(meter.active).toBe(0);
  });

  it('splits overlapping intervals equally and the shares add up to the time jobs ran', () => {
    const { clock, advance } = manualClock();
    const meter = new CostMeter(clock);
    const a = meter.begin();
    advance(1); // a alone: 1
    const b = meter.begin();
    advance(2); // a and b: 1 each
    const c = meter.begin();
    advance(3); // three: 1 each
    const sa = meter.end(a);
    advance(4); // b and c: 2 each
    const sb = meter.end(b);
    advance(1); // c alone: 1
    const sc = meter.end(c);
    expect([sa, sb, sc]).toEqual([3, 4, 4]);
    expect(sa + sb + sc).toBe(11);
  });

  it('shares in proportion to the work each job has in flight, equally while none reports any', () => {
    const { clock, advance } = manualClock();
    const meter = new CostMeter(clock);
    const little = meter.begin();
    const big = meter.begin();
    advance(2); // no work reported: 1 each
    meter.work(little, 3); // three decodes in flight
    meter.work(big, 1); // one inference call queued behind them
    advance(4); // 3 : 1
    meter.work(little, -3);
    advance(1); // big alone has work: all of it
    meter.work(big, -1);
    expect(meter.end(little)).toBe(1 + 3);
    expect(meter.end(big)).toBe(1 + 1 + 1);
  });

  it('refuses a slice ended twice', () => {
    const meter = new CostMeter(() => 0);
    const a = meter.begin();
    meter.end(a);
    expect(() => meter.end(a)).toThrow(/ended twice/);
  });
});
