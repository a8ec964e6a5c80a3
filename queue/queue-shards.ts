/**
 * Where the shards of a stage's queue live. With one shard a stage has one BullMQ queue named as
 * always (`<prefix>:stage-<name>:…`). With N, shard k is a queue of its own whose keys carry a
 * hash tag of their own (`<base>:stage-<name>-{<base>-<name>-<k>}:…`, base: the prefix without
 * braces), so Redis Cluster places the N queues on different slots and so, usually, on different
 * primaries. A batch keeps one shard through every stage (batch index mod N), which keeps its
 * deterministic job ids meaningful for deduplication.
 */
import { type RunSpec, stageQueueName } from './jobs.js';

/** A BullMQ queue's place: the key prefix and queue name to open it with. */
export interface QueuePlace {
  prefix: string;
  name: string;
}

/** The place of shard `k` of `shards` of stage `stage`'s queue under `prefix`. */
export function stageQueuePlace(prefix: string, stage: string, k: number, shards: number): QueuePlace {
  if (shards === 1) return { prefix, name: stageQueueName(stage) };
  // A tag in the prefix would come first in every key and pin all shards to its slot.
  const base = prefix.replace(/[{}]/g, '');
  // BullMQ refuses ':' in a queue name.
  const tag = `${base}-${stage}-${k}`.replaceAll(':', '.');
  return { prefix: base, name: `${stageQueueName(stage)}-{${tag}}` };
}

/** The shard a batch's jobs go to, at every stage. */
export function shardOfBatch(batch: number, shards: number): number {
  return batch % shards;
}

/**
 * How a process's concurrency budget for one stage is split over its shard workers: evenly, the
 * first ones taking the remainder, and at least one each (so N shards run at least N jobs).
 */
export function shardConcurrency(concurrency: number, shards: number): number[] {
  return Array.from({ length: shards }, (_, k) => Math.max(1, Math.floor(concurrency / shards) + (k < concurrency % shards ? 1 : 0)));
}

/** The queues per stage a run's jobs go to: the count stored in its spec (1 for specs without one). */
export function runQueueShards(spec: Pick<RunSpec, 'queueShards'>): number {
  return spec.queueShards ?? 1;
}

/**
 * Why workers configured with `shards` queues per stage never run `spec`'s batches, as one line;
 * null when the layouts agree.
 */
export function shardMismatch(spec: Pick<RunSpec, 'runId' | 'queueShards'>, shards: number): string | null {
  const theirs = runQueueShards(spec);
  if (theirs === shards) return null;
  return (
    `run ${spec.runId} was submitted with queues.shards ${theirs}, but this config has queues.shards ${shards}: ` +
    `workers with ${shards} never read its batches; use queues.shards: ${theirs} (the same in every process of the fleet)`
  );
}
