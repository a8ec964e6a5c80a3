/**
 * Keeps the benchmark code from rotting: the scale benchmarks run end to end at a tiny size
 * (real redis-server, generated models). Speed is not asserted here — that is bench/'s job.
 */
import { describe, expect, it } from 'vitest';
import { clusterShardsBench } from '../../bench/cluster-shards.js';
import { callsByKind, commandCalls, controlPlaneBench, parseRedisInfo } from '../../bench/control-plane.js';
import { enqueueBench } from '../../bench/enqueue.js';
import { redisWindowBench } from '../../bench/redis-window.js';
import { rssBench } from '../../bench/rss.js';

describe('bench smoke', () => {
  it('enqueue: every ref is submitted and Redis grows by a plausible amount per image', async () => {
    const r = await enqueueBench(2000, 32);
    expect(r.refs).toBe(2000);
    // Each batch of 32 refs is one job holding its refs' JSON: tens of bytes per ref at least.
    expect(r.bytesPerImage).toBeGreaterThan(20);
    expect(r.bytesPerImage).toBeLessThan(5000);
  });

  it('window: a windowed submit holds a fraction of the all-at-once one, and a drained run stays near it', async () => {
    const [r] = await redisWindowBench({ sizes: [20_000], wholeUpTo: 20_000, drainUpTo: 20_000, window: 10, log: () => {} });
    // 20,000 refs at ~100 B all at once; 10 batches of 32 in the window.
    expect(r!.wholeSubmitMb!).toBeGreaterThan(1);
    expect(r!.submitMb).toBeLessThan(r!.wholeSubmitMb! / 3);
    expect(r!.drainPeakMb!).toBeLessThan(r!.wholeSubmitMb!);
    expect(r!.drainImagesPerSecond!).toBeGreaterThan(0);
  });

  it('rss: a small run completes and is sampled', async () => {
    const r = await rssBench(300, () => {}, 50);
    expect(r.images).toBe(300);
    // Every key is distinct: a list that repeats keys would be folded to fewer images.
    expect(r.listed).toBe(300);
    expect(r.samples.at(-1)).toMatchObject({ images: 300 });
    expect(r.samples.every((s) => s.rssMb > 10)).toBe(true);
  });

  it('control-plane: a run is measured from Redis INFO and queued batches grow Redis memory', async () => {
    const r = await controlPlaneBench({ images: 128, batchSizes: [32], workers: [1], rounds: 1, log: () => {} });
    expect(r.rows).toHaveLength(1);
    const row = r.rows[0]!;
    expect(row).toMatchObject({ batchSize: 32, workers: 1, images: 128 });
    // Four batches through two stages cost Redis several commands per batch at least.
    expect(row.callsPerImage).toBeGreaterThan(0.1);
    expect(row.cpuUsPerImage).toBeGreaterThan(0);
    expect(row.netCpuUsPerImage).toBeLessThanOrEqual(row.cpuUsPerImage);
    expect(r.idleCpuUsPerSecond).toBeGreaterThan(0);
    expect(row.saturationImagesPerSecond).toBeCloseTo(1e6 / row.netCpuUsPerImage);
    // Every job passes through BullMQ's scripts, so the breakdown names evalsha.
    expect(row.byKind).toMatch(/evalsha \d/);
    expect(r.memory).toHaveLength(1);
    expect(r.memory[0]!.batches).toBe(64);
    // A queued batch holds its 32 refs' paths: hundreds of bytes at least.
    expect(r.memory[0]!.bytesPerBatch).toBeGreaterThan(32 * 20);
  });

  it('cluster-shards: one shard loads the prefix primary alone, three load every primary (built CLI workers, 3-primary cluster)', async () => {
    const r = await clusterShardsBench({ images: 256, batchSize: 32, shards: [1, 3], rounds: 1, concurrency: 2, log: () => {} });
    const [one, three] = r.summary;
    expect(one).toMatchObject({ shards: 1 });
    expect(three).toMatchObject({ shards: 3 });
    expect(one!.imagesPerSecond).toBeGreaterThan(0);
    // The prefix's primary comes first: with one shard it carries the run, the others (almost) nothing.
    expect(one!.callsPerImage[0]!).toBeGreaterThan(0.1);
    expect(Math.max(...one!.callsPerImage.slice(1))).toBeLessThan(one!.callsPerImage[0]! / 5);
    // With three, each primary holds a shard of each stage.
    for (const calls of three!.callsPerImage) expect(calls).toBeGreaterThan(0.05);
    // Another primary's commands by kind are BullMQ's (no tracker counting there).
    expect(three!.byKind[1]).toMatch(/^\w+ \d/);
    expect(three!.byKind[1]).not.toMatch(/hincrbyfloat/);
    expect(r.memory.map((m) => m.shards)).toEqual([1, 3]);
    // Queued refs land on one primary, or on all three.
    expect(r.memory[0]!.mbPer1MImages[0]!).toBeGreaterThan(20);
    for (const mb of r.memory[1]!.mbPer1MImages) expect(mb).toBeGreaterThan(5);
  });

  it('control-plane: INFO text is read into CPU seconds, commands and memory', () => {
    const info = [
      '# CPU',
      'used_cpu_sys:1.500000',
      'used_cpu_user:0.250000',
      'used_cpu_sys_children:9.000000',
      '# Memory',
      'used_memory:123456',
      'used_memory_human:120.56K',
      '# Commandstats',
      'cmdstat_evalsha:calls=10,usec=300,usec_per_call=30.00,rejected_calls=0,failed_calls=0',
      'cmdstat_bzpopmin:calls=5,usec=20,usec_per_call=4.00,rejected_calls=0,failed_calls=0',
    ].join('\r\n');
    expect(parseRedisInfo(info)).toEqual({ cpuSeconds: 1.75, calls: 15, commandUsec: 320, usedMemory: 123456 });
    // A command absent before counts from zero; the largest comes first.
    expect(callsByKind(new Map([['evalsha', 2]]), commandCalls(info), 4)).toBe('evalsha 2.000, bzpopmin 1.250');
    expect(callsByKind(commandCalls(info), commandCalls(info), 4)).toBe('');
  });
});
