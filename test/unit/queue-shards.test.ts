import { describe, expect, it } from 'vitest';
import { RunSpec } from '../../queue/jobs.js';
import { runQueueShards, shardConcurrency, shardMismatch, shardOfBatch, stageQueuePlace } from '../../queue/queue-shards.js';
import { fakePin, RUN_DEFAULTS } from '../helpers/run-spec.js';

describe('queue shards', () => {
  it('one shard keeps the stage queue name and prefix exactly', () => {
    expect(stageQueuePlace('{cascade}', 'little', 0, 1)).toEqual({ prefix: '{cascade}', name: 'stage-little' });
    expect(stageQueuePlace('cascade', 'big', 0, 1)).toEqual({ prefix: 'cascade', name: 'stage-big' });
  });

  it('N shards: one hash tag each, no tag left in the prefix, no ":" in the queue name', () => {
    const places = [0, 1, 2].map((k) => stageQueuePlace('app:{cascade}', 'little', k, 3));
    expect(places).toEqual([
      { prefix: 'app:cascade', name: 'stage-little-{app.cascade-little-0}' },
      { prefix: 'app:cascade', name: 'stage-little-{app.cascade-little-1}' },
      { prefix: 'app:cascade', name: 'stage-little-{app.cascade-little-2}' },
    ]);
    // The first {…} of a key is its tag: the shard's, since the prefix has none.
    const tags = places.map((p) => /\{([^}]+)\}/.exec(`${p.prefix}:${p.name}:wait`)![1]);
    expect(new Set(tags).size).toBe(3);
  });

  it('a batch keeps its shard (batch mod N)', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((b) => shardOfBatch(b, 3))).toEqual([0, 1, 2, 0, 1, 2, 0]);
    expect(shardOfBatch(41, 1)).toBe(0);
  });

  it('splits a concurrency budget over the shards, at least one job each', () => {
    expect(shardConcurrency(8, 1)).toEqual([8]);
    expect(shardConcurrency(8, 3)).toEqual([3, 3, 2]);
    expect(shardConcurrency(2, 4)).toEqual([1, 1, 1, 1]);
  });

  it('a run keeps its layout: a spec from before the field reads as 1 shard; a mismatch is one line naming both counts', () => {
    const old = RunSpec.parse({
      runId: 'old-run',
      source: '/in',
      out: '/out',
      metric: 'maxprob',
      batchSize: 4,
      stages: [
        { name: 'little', model: fakePin('l.onnx'), gmacsPerImage: 0, threshold: 0.9 },
        { name: 'big', model: fakePin('b.onnx'), gmacsPerImage: 0, threshold: null },
      ],
      ...RUN_DEFAULTS,
      createdAt: '2026-01-01T00:00:00Z',
    });
    expect(runQueueShards(old)).toBe(1);
    expect(shardMismatch(old, 1)).toBeNull();
    expect(runQueueShards({ ...old, queueShards: 3 })).toBe(3);
    expect(shardMismatch({ ...old, queueShards: 3 }, 1)).toBe(
      'run old-run was submitted with queues.shards 3, but this config has queues.shards 1: workers with 1 never read its batches; use queues.shards: 3 (the same in every process of the fleet)',
    );
    expect(() => RunSpec.parse({ ...old, queueShards: 0 })).toThrow();
  });
});
