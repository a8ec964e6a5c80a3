/**
 * Wires a process's workers from a validated config: one Redis connection, the object stores,
 * the models of the stages this process serves, and their BullMQ workers. Used by
 * `cascade run` (all roles in one process) and by dedicated worker processes.
 */
import type { Redis } from 'ioredis';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CascadeConfig, isServiceRole } from '../config/schema.js';
import { TensorCache } from '../pipeline/image/tensor-cache.js';
import { ModelCache } from '../pipeline/models/model-cache.js';
import { defaultProbeCacheDir, ProbeCache } from '../pipeline/models/probe-cache.js';
import { configuredStages } from '../config/stages.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { ParquetFiles, readInput } from '../pipeline/inputs/read-sample.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import { Stores } from '../pipeline/storage/stores.js';
import { CascadeQueues } from '../queue/cascade-queues.js';
import { bullLockOptions } from '../queue/job-locks.js';
import { assertClusterPrefix, connectRedis, connectRedisChecked, watchRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';
import { ListingWorker } from './listing-worker.js';
import { MergeWorker, type MergeWorkerOptions } from './merge-worker.js';
import { RunScheduler, type RunSchedulerOptions } from './run-scheduler.js';
import { processMeters } from '../pipeline/cost/cost-meter.js';
import { StageWorker, type StageWorkerOptions, type WorkerLog } from './stage-worker.js';

/** What a process serves: a stage, by its name (little, big, or a `stages:` name), 'merge' (merges, and listings past their first window) or 'scheduler'. */
export type Role = string;

/**
 * What a process needs to serve runs: infrastructure and throughput settings only. Models,
 * thresholds, metric, limits and numerics come from each run's spec, never from here.
 */
export type RuntimeConfig = Pick<
  CascadeConfig,
  | 'executionProviders'
  | 'inferenceThreads'
  | 'intraOpThreads'
  | 'concurrency'
  | 'fetchConcurrency'
  | 'accumulateMs'
  | 'accumulateJobs'
  | 'tensorCacheMb'
  | 'jobLocks'
  | 's3'
  | 'prefix'
  | 'queues'
  | 'maxModels'
  | 'modelDir'
  | 'sources'
>;

export interface Runtime {
  redis: Redis;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** The process's open models, shared by its stages and by run planning. */
  models: ModelCache;
  /** The process's object stores (clients built on first use, closed by close()). */
  stores: Stores;
  openOutput: (out: string) => ObjectStore;
  /**
   * Stop the workers (letting their batches in flight finish), close models and queues, drop
   * the connection. Resolves false when Redis was unavailable and the close gave up waiting for
   * it (REDIS_DOWN_CLOSE_MS): the process should then exit, as BullMQ's connections still retry.
   */
  close(): Promise<boolean>;
}

/**
 * How long closing waits while Redis is away or refuses the credentials. No batch can finish
 * without Redis, and BullMQ's close waits for its connections: without a bound, one SIGTERM
 * never stopped a worker during an outage. Its jobs in flight run again as stalled once Redis is back.
 */
export const REDIS_DOWN_CLOSE_MS = 5000;

/** Per-process settings of dedicated workers (`cascade worker`). */
export interface RuntimeExtras {
  /** Largest inference batch for this process's models (lowers each run's maxBatch). */
  maxBatch?: number;
  /** Called after each stage batch (metrics). */
  onBatch?: StageWorkerOptions['onBatch'];
  /** Called when a scheduled firing is submitted or fails for good (metrics). */
  onFiring?: RunSchedulerOptions['onFiring'];
  /** Called when this process merged a run or its merge failed for good (metrics). */
  onRunFinished?: MergeWorkerOptions['onRunFinished'];
  /**
   * One-shot commands (run, submit): fail within this many ms when Redis is unreachable or
   * rejects the credentials, instead of waiting. Unset (`cascade worker`): keep reconnecting.
   */
  redisTimeoutMs?: number;
}

/**
 * ORT threads per session when not configured: the cores shared among this process' stages,
 * so that sessions that infer at the same time do not oversubscribe the machine.
 */
export function defaultIntraOpThreads(stagesInProcess: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, stagesInProcess)));
}

/**
 * Jobs a stage worker runs at once. Where models may fill inference batches across jobs
 * (accumulateMs set, or a GPU provider first), small forwarded jobs must be in flight together
 * to fill them, so at least accumulateJobs; fixed-batch models then simply run more jobs at once.
 */
export function stageConcurrency(config: Pick<RuntimeConfig, 'concurrency' | 'accumulateMs' | 'accumulateJobs' | 'executionProviders'>): number {
  const accumulating = config.accumulateMs === undefined ? config.executionProviders[0] !== 'cpu' : config.accumulateMs > 0;
  return accumulating ? Math.max(config.concurrency, config.accumulateJobs) : config.concurrency;
}

/** Every role a one-process run of `config` needs: its stages in order, then the merge. */
export function allRoles(config: CascadeConfig): Role[] {
  return [...configuredStages(config).map((s) => s.name), 'merge'];
}

/** Connect and start the workers of `roles` (stage names, 'merge', 'scheduler'); models open as runs name them. */
export async function startRuntime(config: RuntimeConfig, redisUrl: string, roles: Role[], log: WorkerLog, extras: RuntimeExtras = {}): Promise<Runtime> {
  const stores = new Stores(config);
  const openOutput = (out: string) => stores.open(out);
  assertClusterPrefix(redisUrl, config.prefix);
  const redis = extras.redisTimeoutMs === undefined ? connectRedis(redisUrl) : await connectRedisChecked(redisUrl, {}, extras.redisTimeoutMs);
  // One warn line when Redis goes away (or rejects a rotated password), one info line when it is
  // back: the workers' own connection errors are reported through it, not one line per attempt.
  const watch = watchRedis(redis, redisUrl, log);
  const workerLog: WorkerLog = (msg, fields) => {
    if (fields?.err !== undefined && / worker error: /.test(msg) && watch.absorb(fields.err)) return;
    log(msg, fields);
  };
  const lockOptions = bullLockOptions(config.jobLocks);
  const tracker = new RunTracker(redis, config.prefix);
  const queues = new CascadeQueues(redis, config.prefix, config.queues.shards);
  const stageRoles = roles.filter((r) => !isServiceRole(r));
  const models = new ModelCache({
    runtime: {
      executionProviders: config.executionProviders,
      threads: config.inferenceThreads,
      intraOpThreads: config.intraOpThreads || defaultIntraOpThreads(stageRoles.length),
      accumulateMs: config.accumulateMs,
      maxBatch: extras.maxBatch,
    },
    // Each stage may hold a model of every run in flight; keep at least one per stage.
    capacity: Math.max(config.maxModels, stageRoles.length),
    read: (ref) => fetchRef(ref, stores),
    downloadDir: config.modelDir,
    probeCache: new ProbeCache(defaultProbeCacheDir()),
    log,
  });
  const workers: Array<{ close(): Promise<void> }> = [];
  const close = async (): Promise<boolean> => {
    const closing = (async () => {
      await Promise.allSettled(workers.map((w) => w.close()));
      await models.close();
      await queues.close();
      return true;
    })();
    // The process's own connection says whether Redis is there now (a worker's blocking ones follow it).
    const closed = redis.status !== 'ready' ? await Promise.race([closing, sleep(REDIS_DOWN_CLOSE_MS, false, { ref: false })]) : await closing;
    stores.close();
    watch.stop();
    redis.disconnect();
    return closed;
  };
  try {
    // Only a process serving consecutive stages can hand a tensor on.
    const tensorCache = stageRoles.length > 1 && config.tensorCacheMb > 0 ? new TensorCache(config.tensorCacheMb * 2 ** 20) : undefined;
    // The process's machine time, shared among the jobs of all its stages.
    const meters = processMeters();
    // Footers of the Parquet files this process reads samples from, shared by its stages.
    const parquet = new ParquetFiles();
    for (const stage of stageRoles) {
      workers.push(
        new StageWorker({
          connection: redis,
          prefix: config.prefix,
          stage,
          models,
          concurrency: stageConcurrency(config),
          fetch: (ref, maxBytes, at) => readInput(ref, at, { stores, limits: { maxBytes, localRoots: config.sources.localRoots }, parquet }),
          fetchConcurrency: config.fetchConcurrency,
          tensorCache,
          meters,
          openOutput,
          tracker,
          queues,
          log: workerLog,
          lockOptions,
          onBatch: extras.onBatch,
        }),
      );
    }
    if (roles.includes('merge')) {
      workers.push(
        new MergeWorker({ connection: redis, prefix: config.prefix, openOutput, tracker, log: workerLog, lockOptions, onRunFinished: extras.onRunFinished }),
      );
      // Runs list the rest of their source beyond the first window as their batches finish.
      workers.push(new ListingWorker({ connection: redis, prefix: config.prefix, tracker, queues, stores, log: workerLog, lockOptions }));
    }
    if (roles.includes('scheduler'))
      workers.push(
        new RunScheduler({
          connection: redis,
          prefix: config.prefix,
          tracker,
          queues,
          stores,
          openOutput,
          log: workerLog,
          onFiring: extras.onFiring,
          // Firings calibrated from reviews score the schedule's models on the reviewed images here.
          calibration: {
            models,
            fetch: (ref, maxBytes) => fetchRef(ref, stores, { maxBytes, localRoots: config.sources.localRoots }),
            fetchConcurrency: config.fetchConcurrency,
          },
        }),
      );
  } catch (err) {
    await close();
    throw err;
  }
  return { redis, tracker, queues, models, stores, openOutput, close };
}
