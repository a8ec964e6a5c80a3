/** Completion detection against a real redis-server: retries and duplicates never double-count. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RunSpec } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { fakeRunSpec } from '../helpers/run-spec.js';

let redis: TestRedis;
let conn: Redis;

const spec = (runId: string): RunSpec => fakeRunSpec(runId);
const counts = (images: number, accepted: number, forwarded: number, errors: number) => ({ images, accepted, forwarded, errors });

beforeAll(async () => {
  redis = await startRedis();
  conn = connectRedis(redis.url);
});
afterAll(async () => {
  conn.disconnect();
  await redis.stop();
});

describe('RunTracker', () => {
  it('counts a part once however often it is reported, and reports completion once merge is queued', async () => {
    const t = new RunTracker(conn, 'trk');
    expect(await t.create(spec('r1'))).toBe(true);
    expect(await t.create(spec('r1'))).toBe(false);
    expect(await t.finishListing('r1', 8, 2)).toBe(false);
    // batch 0: 3 final at little, 1 forwarded; reported twice (a retry after a crash).
    const b0 = { id: 'b0s0', stage: 0, final: 3, counts: counts(4, 3, 1, 0) };
    expect(await t.finishPart('r1', b0)).toBe(false);
    expect(await t.finishPart('r1', b0)).toBe(false);
    expect(await t.finishPart('r1', { id: 'b1s0', stage: 0, final: 4, counts: counts(4, 3, 0, 1) })).toBe(false);
    expect((await t.progress('r1'))!.final).toBe(7);
    const last = { id: 'b0s1', stage: 1, final: 1, counts: counts(1, 1, 0, 0) };
    expect(await t.finishPart('r1', last)).toBe(true);
    // Until the merge is queued, a retry of the completing job must queue it again.
    expect(await t.finishPart('r1', last)).toBe(true);
    await t.markMergeQueued('r1');
    expect(await t.finishPart('r1', last)).toBe(false);
    const p = (await t.progress('r1'))!;
    expect(p).toMatchObject({ listed: true, total: 8, final: 8, batches: 2 });
    expect(p.stages).toEqual([counts(8, 6, 1, 1), counts(1, 1, 0, 0)]);
    expect(p.completedAt).not.toBeNull();
  });

  it('completes at the end of listing when the workers were faster', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r2'));
    expect(await t.finishPart('r2', { id: 'b0s0', stage: 0, final: 2, counts: counts(2, 2, 0, 0) })).toBe(false);
    expect(await t.finishListing('r2', 2, 1)).toBe(true);
  });

  it('an empty source completes immediately', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r3'));
    expect(await t.finishListing('r3', 0, 0)).toBe(true);
  });

  it('concurrent duplicate reports still count once', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r4'));
    await t.finishListing('r4', 40, 10);
    const reports = Array.from({ length: 10 }, (_, b) => ({ id: `b${b}s0`, stage: 0, final: 4, counts: counts(4, 4, 0, 0) }));
    const results = await Promise.all([...reports, ...reports, ...reports].map((r) => t.finishPart('r4', r)));
    expect(results.some(Boolean)).toBe(true);
    expect((await t.progress('r4'))!.final).toBe(40);
  });

  it('counts error rows by kind once per part, beside the stage counters', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r5'));
    await t.finishListing('r5', 8, 2);
    const b0 = { id: 'b0s0', stage: 0, final: 4, counts: counts(4, 1, 0, 3), errorsByKind: { forbidden: 2, 'not-found': 1 } };
    await t.finishPart('r5', b0);
    await t.finishPart('r5', b0);
    await t.finishPart('r5', { id: 'b1s0', stage: 0, final: 3, counts: counts(4, 2, 1, 1), errorsByKind: { forbidden: 1, decode: 0 } });
    await t.finishPart('r5', { id: 'b1s1', stage: 1, final: 1, counts: counts(1, 0, 0, 1), errorsByKind: { inference: 1 } });
    const p = (await t.progress('r5'))!;
    expect(p.errorsByKind).toEqual({ forbidden: 3, inference: 1, 'not-found': 1 });
    expect(Object.keys(p.errorsByKind)).toEqual(['forbidden', 'inference', 'not-found']);
    expect(p.stages.reduce((n, s) => n + s.errors, 0)).toBe(5);
    expect((await t.progress('r1'))!.errorsByKind).toEqual({});
  });

  it('keeps counted parts as one bit per batch and part kind: counted once, batches past 2^20, no per-part members', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r6'));
    const big = 2 ** 20 + 5;
    const part = (id: string, final = 1) => ({ id, stage: 0, final, counts: counts(final, final, 0, 0) });
    await t.finishPart('r6', part(`b${big}s0`, 3));
    await t.finishPart('r6', part(`b${big}s0`, 3));
    // Same batch, other kinds: each its own bit.
    await t.finishPart('r6', { ...part(`b${big}s1`, 2), stage: 1 });
    await t.finishPart('r6', { ...part(`b${big}w0`, 4), lane: 'warmup' });
    await t.finishAudit('r6', { id: `b${big}audit`, audited: 2, agreeing: 1 });
    await t.finishAudit('r6', { id: `b${big}audit`, audited: 2, agreeing: 1 });
    const p = (await t.progress('r6'))!;
    expect(p.final).toBe(9);
    expect(p.audit).toEqual({ expected: 0, done: 2, agreeing: 1 });
    expect(await t.isPartDone('r6', `b${big}s0`)).toBe(true);
    expect(await t.isPartDone('r6', `b${big - 1}s0`)).toBe(false);
    expect((await t.jobContext('r6', `b${big}w0`)).partDone).toBe(true);
    expect((await t.jobContext('r6', `b${big}w1`)).partDone).toBe(false);
    // A bitmap (a string), about a bit per batch up to the highest (jemalloc rounds up): no set of ids growing ~64 B a part.
    expect(await conn.type('trk:run:r6:done:s0')).toBe('string');
    expect(await conn.bitcount('trk:run:r6:done:s0')).toBe(1);
    expect(Number(await conn.call('MEMORY', 'USAGE', 'trk:run:r6:done:s0'))).toBeLessThan((big / 8) * 1.5);
    expect(await conn.exists('trk:run:r6:done')).toBe(0);
    await expect(t.isPartDone('r6', 'nonsense')).rejects.toThrow(/not a part id/);
  });

  it('a part an older version counted in its set of ids stays counted', async () => {
    const t = new RunTracker(conn, 'trk');
    await t.create(spec('r7'));
    await t.finishListing('r7', 6, 2);
    await conn.sadd('trk:run:r7:done', 'b0s0');
    expect(await t.isPartDone('r7', 'b0s0')).toBe(true);
    expect(await t.finishPart('r7', { id: 'b0s0', stage: 0, final: 3, counts: counts(3, 3, 0, 0) })).toBe(false);
    expect((await t.progress('r7'))!.final).toBe(0);
  });
});
