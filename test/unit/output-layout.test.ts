import { describe, expect, it } from 'vitest';
import {
  auditKey,
  batchesPerShard,
  CASCADE_PREFIX,
  MANIFEST_KEY,
  manifestShardKey,
  manifestShardSummaryKey,
  partKey,
  REVIEWS_KEY,
  RUN_CALIBRATION_KEY,
  RUN_MARKER_KEY,
  RUN_OBJECT_PREFIXES,
  SUMMARY_KEY,
  shardBatchRange,
  shardCount,
  shardSummaryIndex,
  warmupPartKey,
  writeProbeKey,
} from '../../pipeline/results/output-layout.js';

describe('output layout', () => {
  it('keeps the keys earlier runs wrote (outputs stay readable across versions)', () => {
    expect([MANIFEST_KEY, SUMMARY_KEY, RUN_MARKER_KEY, RUN_CALIBRATION_KEY, REVIEWS_KEY]).toEqual([
      'manifest.jsonl',
      'summary.json',
      '_cascade/run.json',
      'calibration-curve.json',
      'reviews.jsonl',
    ]);
    expect(partKey(12, 1)).toBe('parts/00000012.stage1.json');
    expect(warmupPartKey(3, 0)).toBe('parts/00000003.warmup.stage0.json');
    expect(auditKey(7)).toBe('audit/00000007.json');
    expect([manifestShardKey(0), manifestShardKey(123456)]).toEqual(['manifest/part-00000.parquet', 'manifest/part-123456.parquet']);
  });

  it('lets --overwrite remove every key a run writes, the marker folder last', () => {
    const keys = [
      MANIFEST_KEY,
      manifestShardKey(3),
      SUMMARY_KEY,
      RUN_CALIBRATION_KEY,
      REVIEWS_KEY,
      partKey(1, 0),
      warmupPartKey(1, 1),
      auditKey(1),
      RUN_MARKER_KEY,
      writeProbeKey('x'),
      manifestShardSummaryKey(3),
    ];
    for (const key of keys) expect(RUN_OBJECT_PREFIXES.some((p) => key.startsWith(p))).toBe(true);
    expect(RUN_OBJECT_PREFIXES.at(-1)).toBe(CASCADE_PREFIX);
  });

  it('cuts manifest shards by batch range: ~shardRows rows of whole batches, at least one shard', () => {
    expect([batchesPerShard(100_000, 32), batchesPerShard(300, 32), batchesPerShard(16, 8), batchesPerShard(1, 64)]).toEqual([3125, 10, 2, 1]);
    expect([shardCount(0, 10), shardCount(10, 10), shardCount(11, 10)]).toEqual([1, 1, 2]);
    expect([shardBatchRange(0, 10, 25), shardBatchRange(2, 10, 25), shardBatchRange(0, 10, 0)]).toEqual([
      { from: 0, to: 10 },
      { from: 20, to: 25 },
      { from: 0, to: 0 },
    ]);
    expect(manifestShardSummaryKey(7)).toBe('_cascade/manifest/part-00007.json');
    expect([
      shardSummaryIndex('_cascade/manifest/part-00007.json'),
      shardSummaryIndex('_cascade/manifest/part-00007.json.tmp'),
      shardSummaryIndex('manifest/part-00007.parquet'),
    ]).toEqual([7, null, null]);
  });
});
