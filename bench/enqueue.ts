/**
 * Scale of submission: enqueue N synthetic refs through submitRun into a private redis-server
 * (no workers), time it, and divide Redis' memory growth by N for bytes per in-flight image.
 */
import { startPrivateRedis } from '../cli/private-redis.js';
import { submitRun } from '../producers/submit-run.js';
import { CascadeQueues } from '../queue/cascade-queues.js';
import type { RunSpec } from '../queue/jobs.js';
import { connectRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';
import { fakePin, RUN_DEFAULTS } from '../test/helpers/run-spec.js';

export interface EnqueueResult {
  refs: number;
  seconds: number;
  refsPerSecond: number;
  bytesPerImage: number;
}

/** Refs like a real S3 listing would give, without listing anything. */
async function* syntheticRefs(n: number): AsyncGenerator<string> {
  for (let i = 0; i < n; i++) yield `s3://photos-bucket/2024/collection/img-${String(i).padStart(8, '0')}.jpg`;
}

async function usedMemory(redis: ReturnType<typeof connectRedis>): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

/** Enqueue `n` refs in batches of `batchSize`; returns time and Redis bytes per image. */
export async function enqueueBench(n: number, batchSize = 32): Promise<EnqueueResult> {
  const server = await startPrivateRedis();
  const redis = connectRedis(server.url);
  const tracker = new RunTracker(redis, 'bench');
  const queues = new CascadeQueues(redis, 'bench');
  try {
    const stages = [
      { name: 'little', model: fakePin('/models/little.onnx'), gmacsPerImage: 0.15, threshold: 0.5 },
      { name: 'big', model: fakePin('/models/big.onnx'), gmacsPerImage: 1.6, threshold: null },
    ];
    // Enqueueing never opens a model: stand-in pins give the spec its real size in Redis.
    const spec: RunSpec = {
      runId: 'bench-enqueue',
      source: 's3://photos-bucket/2024/collection/',
      out: 's3://results/bench/',
      metric: 'maxprob',
      batchSize,
      ...RUN_DEFAULTS,
      stages,
      createdAt: new Date().toISOString(),
    };
    await queues.stage('little').waitUntilReady();
    const before = await usedMemory(redis);
    const started = performance.now();
    const result = await submitRun({ spec, refs: syntheticRefs(n), tracker, queues, output: null });
    const seconds = (performance.now() - started) / 1000;
    const after = await usedMemory(redis);
    if (result.images !== n) throw new Error(`submitted ${result.images} of ${n} refs`);
    return { refs: n, seconds, refsPerSecond: n / seconds, bytesPerImage: (after - before) / n };
  } finally {
    await queues.close();
    redis.disconnect();
    await server.stop();
  }
}
