/**
 * The control plane's ceiling: what one Redis core costs per image. A real redis-server on a
 * free port, the tiny generated models, N distinct 32×32 images; for each batch size and number
 * of worker runtimes (in-process `startRuntime`s, each with its own Redis connection and BullMQ
 * workers, as `cascade worker` processes would have), one whole run, measured from Redis' own
 * INFO: CPU (used_cpu_user + used_cpu_sys) and commands (commandstats) per image. Idle polls and
 * the bench's progress polls (one every 500 ms) are included, as they would be in production.
 * Memory per in-flight batch: submit with no workers running, used_memory delta per queued batch.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { startPrivateRedis } from '../cli/private-redis.js';
import { loadConfig } from '../config/load-config.js';
import type { CascadeConfig } from '../config/schema.js';
import { listSource } from '../producers/list-source.js';
import { planRun } from '../producers/plan-run.js';
import { submitRun } from '../producers/submit-run.js';
import { connectRedis } from '../queue/redis-connection.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { writeTestModels } from '../test/helpers/test-models.js';
import { type Runtime, startRuntime } from '../workers/cascade-runtime.js';
import { distinctKeys } from './distinct-keys.js';
import { median } from './stats.js';

const MEMORY_BATCHES = 64;
const IDLE_SAMPLE_MS = 3000;

export interface RedisCounters {
  cpuSeconds: number;
  calls: number;
  /** Time inside commands (commandstats usec): wall clock, so on a loaded machine it can exceed cpuSeconds. */
  commandUsec: number;
  usedMemory: number;
}

/** Calls per command name (commandstats), for the per-kind breakdown. */
export function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

/** The commands per image between two commandstats snapshots, largest first (`evalsha 1.23, bzpopmin 0.40`). */
export function callsByKind(before: Map<string, number>, after: Map<string, number>, images: number, top = 8): string {
  return [...after]
    .map(([name, n]) => [name, (n - (before.get(name) ?? 0)) / images] as const)
    .filter(([, perImage]) => perImage > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, perImage]) => `${name} ${perImage.toFixed(3)}`)
    .join(', ');
}

export interface ControlPlaneRow {
  batchSize: number;
  workers: number;
  images: number;
  seconds: number;
  cpuUsPerImage: number;
  /** cpuUsPerImage less the server's own idle CPU (its timers, measured with no workers) over the run's seconds. */
  netCpuUsPerImage: number;
  commandUsPerImage: number;
  callsPerImage: number;
  /** 1e6 / netCpuUsPerImage: the images/s at which this Redis' one core would be busy all the time. */
  saturationImagesPerSecond: number;
  /** Commands per image by kind, largest first. */
  byKind: string;
}

export interface QueuedMemoryRow {
  batchSize: number;
  batches: number;
  bytesPerBatch: number;
  bytesPerImage: number;
}

export interface ControlPlaneResult {
  /** The server's own CPU per second with no clients but the bench's connection (serverCron at hz 10). */
  idleCpuUsPerSecond: number;
  rows: ControlPlaneRow[];
  memory: QueuedMemoryRow[];
}

export interface ControlPlaneOptions {
  images: number;
  batchSizes: number[];
  workers: number[];
  rounds: number;
  log: (line: string) => void;
}

/** Parses the figures the benchmark needs from `INFO cpu`, `INFO commandstats` and `INFO memory`. */
export function parseRedisInfo(info: string): RedisCounters {
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  let calls = 0;
  let commandUsec = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1]);
    commandUsec += Number(m[2]);
  }
  return { cpuSeconds: field('used_cpu_user') + field('used_cpu_sys'), calls, commandUsec, usedMemory: field('used_memory') };
}

async function counters(redis: Redis): Promise<RedisCounters> {
  return parseRedisInfo(await redis.info('everything'));
}

/** Runs the batch × workers matrix `rounds` times, interleaved, then the queued-memory measurement. */
export async function controlPlaneBench(opts: ControlPlaneOptions): Promise<ControlPlaneResult> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-control-plane-'));
  const server = await startPrivateRedis();
  const redis = connectRedis(server.url);
  try {
    // Redis' timers cost CPU whether or not work flows: a fixed rate, not a cost per image, so the
    // saturation point is computed without it (the gross figure is reported beside it).
    const idleStart = await counters(redis);
    await sleep(IDLE_SAMPLE_MS);
    const idleCpuUsPerSecond = (((await counters(redis)).cpuSeconds - idleStart.cpuSeconds) * 1e6) / (IDLE_SAMPLE_MS / 1000);
    opts.log(`  Redis idle: ${idleCpuUsPerSecond.toFixed(0)} CPU-µs/s`);
    const models = await writeTestModels(join(dir, 'models'));
    const list = await distinctKeys(join(dir, 'keys'), opts.images);
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
    const configFor = (prefix: string, batchSize: number) =>
      loadConfig({ overrides: { little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, prefix, batchSize } });

    const measured: ControlPlaneRow[] = [];
    let n = 0;
    for (let round = 0; round < opts.rounds; round++)
      for (const workers of opts.workers)
        for (const batchSize of opts.batchSizes) {
          const prefix = `cp${n++}`;
          const config = await configFor(prefix, batchSize);
          const row = await oneRun(config, server.url, redis, list, join(dir, `out-${prefix}`), workers, opts.images, idleCpuUsPerSecond);
          opts.log(
            `  round ${round + 1} batch ${batchSize} workers ${workers}: ${row.seconds.toFixed(1)} s, ` +
              `${row.cpuUsPerImage.toFixed(1)} Redis CPU-µs/img (${row.netCpuUsPerImage.toFixed(1)} net of idle), ${row.callsPerImage.toFixed(3)} commands/img`,
          );
          opts.log(`    by kind (per image): ${row.byKind}`);
          measured.push(row);
          // Each run's keys stay until the end: the server is thrown away, and deleting would cost Redis CPU in the next run.
        }

    const rows = opts.workers.flatMap((workers) =>
      opts.batchSizes.map((batchSize) => {
        const same = measured.filter((r) => r.workers === workers && r.batchSize === batchSize);
        const net = median(same.map((r) => r.netCpuUsPerImage));
        return {
          batchSize,
          workers,
          images: opts.images,
          seconds: median(same.map((r) => r.seconds)),
          cpuUsPerImage: median(same.map((r) => r.cpuUsPerImage)),
          netCpuUsPerImage: net,
          commandUsPerImage: median(same.map((r) => r.commandUsPerImage)),
          callsPerImage: median(same.map((r) => r.callsPerImage)),
          saturationImagesPerSecond: 1e6 / net,
          byKind: same[0]?.byKind ?? '',
        };
      }),
    );

    // At least MEMORY_BATCHES batches of the largest size, so the run's fixed keys (spec, counters) are a small share.
    const memImages = Math.max(opts.images, MEMORY_BATCHES * Math.max(...opts.batchSizes));
    const memList = memImages === opts.images ? list : await distinctKeys(join(dir, 'mem-keys'), memImages);
    const memory: QueuedMemoryRow[] = [];
    for (const batchSize of opts.batchSizes)
      memory.push(await queuedMemory(await configFor(`mem${batchSize}`, batchSize), server.url, redis, memList, join(dir, `mem-${batchSize}`), memImages));
    return { idleCpuUsPerSecond, rows, memory };
  } finally {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** One whole run with `workers` runtimes serving both stages (the first also merges). */
async function oneRun(
  config: CascadeConfig,
  url: string,
  redis: Redis,
  list: string,
  out: string,
  workers: number,
  images: number,
  idleCpuUsPerSecond: number,
): Promise<ControlPlaneRow> {
  const runtimes: Runtime[] = [];
  try {
    for (let i = 0; i < workers; i++) runtimes.push(await startRuntime(config, url, i === 0 ? ['little', 'big', 'merge'] : ['little', 'big'], () => {}));
    const head = runtimes[0]!;
    const run = await planRun(config, list, out, head.models, `bench-${config.prefix}`);
    const beforeInfo = await redis.info('everything');
    const before = parseRedisInfo(beforeInfo);
    const started = performance.now();
    await submitRun({
      spec: run,
      refs: listSource(list, { extensions: config.extensions }),
      tracker: head.tracker,
      queues: head.queues,
      output: head.openOutput(run.out),
    });
    await waitForRun(head.tracker, run.runId, () => {}, 500);
    const seconds = (performance.now() - started) / 1000;
    const afterInfo = await redis.info('everything');
    const after = parseRedisInfo(afterInfo);
    const cpuUsPerImage = ((after.cpuSeconds - before.cpuSeconds) * 1e6) / images;
    const netCpuUsPerImage = Math.max(0, cpuUsPerImage - (idleCpuUsPerSecond * seconds) / images);
    return {
      batchSize: config.batchSize,
      workers,
      images,
      seconds,
      cpuUsPerImage,
      netCpuUsPerImage,
      commandUsPerImage: (after.commandUsec - before.commandUsec) / images,
      callsPerImage: (after.calls - before.calls) / images,
      saturationImagesPerSecond: 1e6 / netCpuUsPerImage,
      byKind: callsByKind(commandCalls(beforeInfo), commandCalls(afterInfo), images),
    };
  } finally {
    for (const r of runtimes) await r.close();
  }
}

/** Submits the run with no stage workers: Redis' used_memory growth per queued batch. */
async function queuedMemory(config: CascadeConfig, url: string, redis: Redis, list: string, out: string, images: number): Promise<QueuedMemoryRow> {
  const runtime = await startRuntime(config, url, [], () => {});
  try {
    const run = await planRun(config, list, out, runtime.models, `bench-${config.prefix}`);
    await runtime.queues.stage('little').waitUntilReady();
    const before = (await counters(redis)).usedMemory;
    await submitRun({
      spec: run,
      refs: listSource(list, { extensions: config.extensions }),
      tracker: runtime.tracker,
      queues: runtime.queues,
      output: runtime.openOutput(run.out),
    });
    const grown = (await counters(redis)).usedMemory - before;
    const batches = Math.ceil(images / config.batchSize);
    return { batchSize: config.batchSize, batches, bytesPerBatch: grown / batches, bytesPerImage: grown / images };
  } finally {
    await runtime.close();
  }
}
