/**
 * The cost meter on a clock the test moves by hand, so every share is exact: a job alone gets
 * all the time that passed, concurrent jobs split each interval by the work they have in flight
 * (equally when none reports any), idle time is nobody's, and time measured on an inference
 * call's thread is that call's job's alone.
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

  it('charges the thread time of a slow call to its job alone: a little job decoding beside it pays only the rest', () => {
    // The process clock and, inside it, the inference threads' clock (a fake: the unit under test is the meter).
    let process = 100;
    let threads = 40;
    const meter = new CostMeter(
      () => process,
      () => threads,
    );
    const big = meter.begin();
    meter.work(big, 0); // the call: one intra-op thread, measured on it
    const little = meter.begin();
    meter.work(little, 1); // a decode
    process += 3; // 2.5 s on the big call's thread, 0.5 s decoding
    threads += 2.5;
    meter.work(little, -1);
    meter.work(little, 2); // the little model's call beside it
    process += 1.1; // 1 s more of the big call, 0.1 s of the little one
    threads += 1.1;
    meter.charge(little, 0.1);
    meter.work(little, -2);
    const l = meter.end(little);
    process += 2.5; // the big call alone
    threads += 2.5;
    meter.charge(big, 6);
    meter.work(big, 0);
    const b = meter.end(big);
    expect(l).toBeCloseTo(0.6, 9);
    expect(b).toBeCloseTo(6, 9);
    // Everything the process spent while they ran, charged once.
    expect(l + b).toBeCloseTo(6.6, 9);
  });

  it('shares the whole clock by work in flight without a thread clock (charge() is then ignored), overcharging a job beside a slow call', () => {
    let process = 100;
    const meter = new CostMeter(() => process);
    expect(meter.measuresCalls).toBe(false);
    const big = meter.begin();
    meter.work(big, 2);
    const little = meter.begin();
    meter.work(little, 1);
    process += 3;
    meter.work(little, -1);
    meter.charge(little, 0.1);
    const l = meter.end(little);
    process += 3;
    expect(l).toBeCloseTo(1, 9);
    expect(meter.end(big)).toBeCloseTo(5, 9);
  });

  it('refuses a slice ended twice', () => {
    const meter = new CostMeter(() => 0);
    const a = meter.begin();
    meter.end(a);
    expect(() => meter.end(a)).toThrow(/ended twice/);
  });
});
