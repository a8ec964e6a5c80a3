/**
 * Redis memory against collection size with the listing window (producers/run-listing.ts): a key
 * list of N distinct `s3://` refs submitted into a private redis-server, first with no worker at
 * all (what the submit leaves queued), then drained by a stand-in first stage that counts each
 * batch as done without reading an image while the listing job tops the run up, sampling
 * used_memory throughout. The same submit without a window (every batch queued at once) is the
 * baseline, for the sizes where it fits. `shardWindowBench`: the same for a sharded source (many
 * small WebDataset tar shards), under the window of batches, under a byte budget, and listed whole.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { startPrivateRedis } from '../cli/private-redis.js';
import { Stores } from '../pipeline/storage/stores.js';
import { listSource } from '../producers/list-source.js';
import { listInputs, resumableSource } from '../producers/inputs/input-formats.js';
import { DEFAULT_WINDOW_BATCHES } from '../producers/run-listing.js';
import { submitRun } from '../producers/submit-run.js';
import { CascadeQueues } from '../queue/cascade-queues.js';
import { partId, type RunSpec, StageJob, stageQueueName } from '../queue/jobs.js';
import { connectRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';
import { fakePin, RUN_DEFAULTS } from '../test/helpers/run-spec.js';
import { tarShard } from '../test/helpers/shard-fixture.js';
import { ListingWorker } from '../workers/listing-worker.js';

export interface WindowMemoryRow {
  refs: number;
  /** Redis used_memory growth after a submit with no worker: windowed, and all at once (null where not run). */
  submitMb: number;
  wholeSubmitMb: number | null;
  submitSeconds: number;
  /** Draining the whole run through the window: peak and final used_memory growth, and the rate. */
  drainPeakMb: number | null;
  drainEndMb: number | null;
  drainImagesPerSecond: number | null;
}

/** `n` distinct refs, one a line, written fast. */
async function writeKeyList(file: string, n: number): Promise<void> {
  const out = createWriteStream(file);
  for (let start = 0; start < n; start += 10_000) {
    let chunk = '';
    for (let i = start; i < Math.min(n, start + 10_000); i++) chunk += `s3://photos-bucket/2024/collection/img-${String(i).padStart(9, '0')}.jpg\n`;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}

async function usedMemory(redis: ReturnType<typeof connectRedis>): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
}

/** A run spec over `list` whose models are stand-in pins (nothing is inferred). */
function specFor(runId: string, list: string, batchSize: number): RunSpec {
  return {
    runId,
    source: list,
    out: 's3://results/bench/',
    metric: 'maxprob',
    batchSize,
    ...RUN_DEFAULTS,
    stages: [
      { name: 'little', model: fakePin('/models/little.onnx'), gmacsPerImage: 0.15, threshold: 0.5 },
      { name: 'big', model: fakePin('/models/big.onnx'), gmacsPerImage: 1.6, threshold: null },
    ],
    createdAt: new Date().toISOString(),
  };
}

/** One size: windowed submit, optional whole submit, optional drain. */
async function measure(
  n: number,
  o: { whole: boolean; drain: boolean; batchSize: number; window: number; log: (line: string) => void },
): Promise<WindowMemoryRow> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-window-'));
  const server = await startPrivateRedis();
  const redis = connectRedis(server.url);
  // The key list is local: no store client is ever built.
  const stores = new Stores();
  try {
    const list = join(dir, 'refs.txt');
    await writeKeyList(list, n);
    const extensions = ['.jpg'];
    let wholeSubmitMb: number | null = null;
    if (o.whole) {
      const prefix = 'whole';
      const tracker = new RunTracker(redis, prefix);
      const queues = new CascadeQueues(redis, prefix);
      await queues.stage('little').waitUntilReady();
      const before = await usedMemory(redis);
      await submitRun({ spec: specFor('whole', list, o.batchSize), refs: listSource(list, { extensions }), tracker, queues, output: null });
      wholeSubmitMb = ((await usedMemory(redis)) - before) / 2 ** 20;
      await queues.close();
      await redis.flushall();
      o.log(`  ${n} refs, all at once: +${wholeSubmitMb.toFixed(1)} MB`);
    }
    const prefix = 'win';
    const tracker = new RunTracker(redis, prefix);
    const queues = new CascadeQueues(redis, prefix);
    await queues.stage('little').waitUntilReady();
    const before = await usedMemory(redis);
    const spec = specFor('windowed', list, o.batchSize);
    const started = performance.now();
    await submitRun({ spec, refs: resumableSource({ source: list, extensions }, stores), window: o.window, tracker, queues, output: null });
    const submitSeconds = (performance.now() - started) / 1000;
    const submitMb = ((await usedMemory(redis)) - before) / 2 ** 20;
    o.log(`  ${n} refs, window ${o.window} batches of ${o.batchSize}: +${submitMb.toFixed(1)} MB after the submit (${submitSeconds.toFixed(1)} s)`);
    let drain: Pick<WindowMemoryRow, 'drainPeakMb' | 'drainEndMb' | 'drainImagesPerSecond'> = {
      drainPeakMb: null,
      drainEndMb: null,
      drainImagesPerSecond: null,
    };
    if (o.drain) {
      // The first stage stood in for: each batch is counted done with all its images final, as a worker's part would be.
      const stageConnection = redis.duplicate();
      const stage = new Worker(
        stageQueueName('little'),
        async (job) => {
          const data = StageJob.parse(job.data);
          const n = data.items.length;
          await tracker.finishPart(data.runId, { id: partId(data.batch, 0), stage: 0, final: n, counts: { images: n, accepted: n, forwarded: 0, errors: 0 } });
        },
        { connection: stageConnection, prefix, concurrency: 32 },
      );
      const lister = new ListingWorker({ connection: redis, prefix, tracker, queues, stores, log: () => {}, pollMs: 50 });
      let peak = 0;
      const t0 = performance.now();
      let lastLog = t0;
      for (;;) {
        const used = (await usedMemory(redis)) - before;
        peak = Math.max(peak, used);
        const p = (await tracker.progress(spec.runId))!;
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          o.log(`    ${p.final} / ${n} done, +${(used / 2 ** 20).toFixed(1)} MB`);
        }
        if (p.listed && p.final >= n) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const seconds = (performance.now() - t0) / 1000;
      const end = ((await usedMemory(redis)) - before) / 2 ** 20;
      await stage.close();
      stageConnection.disconnect();
      await lister.close();
      drain = { drainPeakMb: peak / 2 ** 20, drainEndMb: end, drainImagesPerSecond: n / seconds };
      o.log(`  drained in ${seconds.toFixed(0)} s: peak +${drain.drainPeakMb!.toFixed(1)} MB, end +${end.toFixed(1)} MB`);
    }
    await queues.close();
    return { refs: n, submitMb, wholeSubmitMb, submitSeconds, ...drain };
  } finally {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Redis memory of windowed runs of each size in `sizes`; the all-at-once baseline up to `wholeUpTo` refs, the drain up to `drainUpTo`. */
export async function redisWindowBench(o: {
  sizes: number[];
  wholeUpTo: number;
  drainUpTo: number;
  batchSize?: number;
  /** Batches in flight (default DEFAULT_WINDOW_BATCHES). */
  window?: number;
  log: (line: string) => void;
}): Promise<WindowMemoryRow[]> {
  const rows: WindowMemoryRow[] = [];
  for (const n of o.sizes)
    rows.push(
      await measure(n, {
        whole: n <= o.wholeUpTo,
        drain: n <= o.drainUpTo,
        batchSize: o.batchSize ?? 32,
        window: o.window ?? DEFAULT_WINDOW_BATCHES,
        log: o.log,
      }),
    );
  return rows;
}

export interface ShardWindowRow {
  how: string;
  /** Redis used_memory growth after the submit, with no worker. */
  submitMb: number;
  images: number;
  batches: number;
  submitSeconds: number;
  /** This process's CPU seconds (user + system) during the submit. */
  cpuSeconds: number;
}

/** A 1×1 PNG: the samples' images are never decoded here, only listed. */
const TINY_PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

/**
 * Redis memory after a submit (no worker) of `shards` tar shards of `samples` tiny images each:
 * under a window of `window` batches, under a byte budget of `windowBytes`, and listed whole (the
 * submission before sharded sources were windowed). Each in a fresh private redis-server.
 */
export async function shardWindowBench(o: {
  shards: number;
  samples: number;
  batchSize?: number;
  window?: number;
  windowBytes?: number;
  log: (line: string) => void;
}): Promise<ShardWindowRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-shard-window-'));
  const batchSize = o.batchSize ?? 32;
  const window = o.window ?? DEFAULT_WINDOW_BATCHES;
  const windowBytes = o.windowBytes ?? 2 ** 20;
  try {
    await mkdir(join(dir, 'shards'));
    const width = String(o.shards - 1).length;
    for (let k = 0; k < o.shards; k++) {
      const members = Array.from({ length: o.samples }, (_, i) => ({
        name: `s${String(k).padStart(width, '0')}-${String(i).padStart(4, '0')}.png`,
        body: TINY_PNG,
      }));
      await writeFile(join(dir, 'shards', `${String(k).padStart(width, '0')}.tar`), await tarShard(members));
    }
    const source = join(dir, 'shards', `{${'0'.repeat(width)}..${o.shards - 1}}.tar`);
    o.log(`  ${o.shards} shards of ${o.samples} samples written`);
    const rows: ShardWindowRow[] = [];
    const extensions = ['.png'];
    const cases: Array<[string, (stores: Stores) => Parameters<typeof submitRun>[0]['refs'], { window?: number; windowBytes?: number }]> = [
      [`window ${window} batches`, (stores) => resumableSource({ source, extensions }, stores), { window }],
      [
        `window.bytes ${(windowBytes / 2 ** 20).toFixed(1)} MB`,
        (stores) => resumableSource({ source, extensions }, stores),
        { window: 1_000_000, windowBytes },
      ],
      ['listed whole', () => listInputs(source, { extensions }), {}],
    ];
    for (const [how, refs, bounds] of cases) {
      const server = await startPrivateRedis();
      const redis = connectRedis(server.url);
      const stores = new Stores();
      try {
        const tracker = new RunTracker(redis, 'shards');
        const queues = new CascadeQueues(redis, 'shards');
        await queues.stage('little').waitUntilReady();
        const before = await usedMemory(redis);
        const cpu = process.cpuUsage();
        const started = performance.now();
        const r = await submitRun({ spec: specFor(`shards-${rows.length}`, source, batchSize), refs: refs(stores), ...bounds, tracker, queues, output: null });
        const submitSeconds = (performance.now() - started) / 1000;
        const used = process.cpuUsage(cpu);
        const submitMb = ((await usedMemory(redis)) - before) / 2 ** 20;
        rows.push({ how, submitMb, images: r.images, batches: r.batches, submitSeconds, cpuSeconds: (used.user + used.system) / 1e6 });
        o.log(`  ${how}: ${r.images} images in ${r.batches} batches queued, +${submitMb.toFixed(2)} MB (${submitSeconds.toFixed(1)} s)`);
        await queues.close();
      } finally {
        redis.disconnect();
        await server.stop();
      }
    }
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
