/**
 * Wires a process's workers from a validated config: one Redis connection, the S3 client,
 * the models of the stages this process serves, and their BullMQ workers. Used by
 * `cascade run` (all roles in one process) and by dedicated worker processes.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Redis } from 'ioredis';
import { availableParallelism } from 'node:os';
import type { CascadeConfig } from '../config/schema.js';
import { configuredStages } from '../config/stages.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { parseLocation } from '../pipeline/storage/location.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import { makeS3Client, openStore } from '../pipeline/storage/open-store.js';
import { loadStageModel, type LoadedStage } from '../pipeline/models/stage-model.js';
import { TensorCache } from '../pipeline/image/tensor-cache.js';
import { CascadeQueues } from '../queue/cascade-queues.js';
import { MergeWorker } from './merge-worker.js';
import { bullLockOptions } from '../queue/job-locks.js';
import { assertClusterPrefix, connectRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';
import { RunScheduler } from './run-scheduler.js';
import { StageWorker, type StageWorkerOptions } from './stage-worker.js';

/** What a process serves: a stage, by its name (little, big, or a `stages:` name), 'merge' or 'scheduler'. */
export type Role = string;

/** Every role of a config: its stages in order, then the merge. */
export function allRoles(config: CascadeConfig): Role[] {
  return [...configuredStages(config).map((s) => s.name), 'merge'];
}

export interface Runtime {
  redis: Redis;
  tracker: RunTracker;
  queues: CascadeQueues;
  stages: LoadedStage[];
  s3: () => S3Client;
  openOutput: (out: string) => ObjectStore;
  close(): Promise<void>;
}

/** Per-process settings of dedicated workers (`cascade worker`). */
export interface RuntimeExtras {
  /** Largest inference batch for this process's models (overrides each spec's maxBatch). */
  maxBatch?: number;
  /** Called after each stage batch (metrics). */
  onBatch?: StageWorkerOptions['onBatch'];
}

/**
 * ORT threads per session when not configured: the cores shared among this process' stages,
 * so that sessions that infer at the same time do not oversubscribe the machine.
 */
export function defaultIntraOpThreads(stagesInProcess: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, stagesInProcess)));
}

/**
 * Images per inference call within a job. A fixed-batch model runs its images in separate
 * session calls anyway, so it starts on the first few while the rest decode; a dynamic-batch
 * model gets the whole job in one call, its batches being what makes it fast.
 */
export function inferChunk(model: LoadedStage): number {
  return model.pool.io.fixedBatch !== null ? Math.max(8, model.pool.io.fixedBatch) : 0;
}

/** Connect, load the models of `roles` and start their workers ('scheduler' consumes schedule firings). */
export async function startRuntime(config: CascadeConfig, redisUrl: string, roles: Role[], log: (msg: string) => void, extras: RuntimeExtras = {}): Promise<Runtime> {
  let client: S3Client | undefined;
  const s3 = () => (client ??= makeS3Client(config.s3));
  const openOutput = (out: string) => openStore(parseLocation(out), s3);
  assertClusterPrefix(redisUrl, config.prefix);
  const redis = connectRedis(redisUrl);
  const lockOptions = bullLockOptions(config.jobLocks);
  const tracker = new RunTracker(redis, config.prefix);
  const queues = new CascadeQueues(redis, config.prefix);
  const stages: LoadedStage[] = [];
  const workers: Array<{ close(): Promise<void> }> = [];
  const close = async () => {
    await Promise.allSettled(workers.map((w) => w.close()));
    await Promise.allSettled(stages.map((s) => s.close()));
    await queues.close();
    client?.destroy();
    redis.disconnect();
  };
  try {
    const all = configuredStages(config);
    const served = all.filter((s) => roles.includes(s.name)).length;
    // Only a process serving consecutive stages can hand a tensor on.
    const tensorCache = served > 1 && config.tensorCacheMb > 0 ? new TensorCache(config.tensorCacheMb * 2 ** 20) : undefined;
    for (const [index, stage] of all.entries()) {
      if (!roles.includes(stage.name)) continue;
      const spec = extras.maxBatch === undefined ? stage.spec : { ...stage.spec, maxBatch: extras.maxBatch };
      const intraOpThreads = config.intraOpThreads || defaultIntraOpThreads(served);
      const model = await loadStageModel(stage.name, spec, { executionProviders: config.executionProviders, threads: config.inferenceThreads, intraOpThreads, accumulateMs: config.accumulateMs }, log);
      stages.push(model);
      // Forwarded jobs are small; a batched model fills its batches from several at once.
      const concurrency = model.pool.accumulator ? Math.max(config.concurrency, config.accumulateJobs) : config.concurrency;
      const deps = { fetch: (ref: string) => fetchRef(ref, { s3 }, { maxBytes: config.limits.maxBytes }), maxPixels: config.limits.maxPixels, fetchConcurrency: config.fetchConcurrency, tensorCache, inferChunk: inferChunk(model) };
      workers.push(new StageWorker({ connection: redis, prefix: config.prefix, stageIndex: index, model, concurrency, deps, openOutput, tracker, queues, log, lockOptions, onBatch: extras.onBatch }));
    }
    if (roles.includes('merge')) workers.push(new MergeWorker({ connection: redis, prefix: config.prefix, openOutput, tracker, log, lockOptions }));
    if (roles.includes('scheduler')) workers.push(new RunScheduler({ connection: redis, prefix: config.prefix, tracker, queues, s3, log }));
  } catch (err) {
    await close();
    throw err;
  }
  return { redis, tracker, queues, stages, s3, openOutput, close };
}
