/**
 * Keeps the benchmark code from rotting: the scale benchmarks run end to end at a tiny size
 * (real redis-server, generated models). Speed is not asserted here — that is bench/'s job.
 */
import { describe, expect, it } from 'vitest';
import { enqueueBench } from '../../bench/enqueue.js';
import { rssBench } from '../../bench/rss.js';

describe('bench smoke', () => {
  it('enqueue: every ref is submitted and Redis grows by a plausible amount per image', async () => {
    const r = await enqueueBench(2000, 32);
    expect(r.refs).toBe(2000);
    // Each batch of 32 refs is one job holding its refs' JSON: tens of bytes per ref at least.
    expect(r.bytesPerImage).toBeGreaterThan(20);
    expect(r.bytesPerImage).toBeLessThan(5000);
  });

  it('rss: a small run completes and is sampled', async () => {
    const r = await rssBench(300, () => {}, 50);
    expect(r.images).toBe(300);
    expect(r.samples.at(-1)).toMatchObject({ images: 300 });
    expect(r.samples.every((s) => s.rssMb > 10)).toBe(true);
  });
});
