/**
 * Bounded in-flight work (producers/run-listing.ts, workers/listing-worker.ts) on a real
 * redis-server: a run keeps at most its window of batches queued, its listing cursor lives in
 * Redis, and the merge role lists the rest as batches finish. A listing cut off anywhere —
 * at each step of a pass in-process, or by kill -9 of the submitter or of the process topping
 * the run up — ends with every image exactly once in the manifest.
 *
 * The kill tests remove the images of the batches already done before the listing resumes, as a
 * user clearing a finished part of a source would: a listing that resumed from anything but the
 * stored cursor (from the start, as a cursor kept in memory would after a kill) would number the
 * remaining images as those done batches and skip them, or hang, and these tests would fail.
 */
import type { Job } from 'bullmq';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OUTPUT } from '../../config/schema.js';
import type { RunSummary } from '../../pipeline/results/manifest.js';
import { MANIFEST_SHARD_SUMMARIES_PREFIX, MANIFEST_SHARDS_PREFIX, manifestShardKey } from '../../pipeline/results/output-layout.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';
import { listingPass, OpenListings, resumableSource } from '../../producers/run-listing.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { listingJobId, partId, type RunSpec, type StageJob } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { colourSpec, writeAlternatingImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { pinTestModel, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { spawnSubmitter } from '../helpers/submit-process.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { MergeWorker } from '../../workers/merge-worker.js';

const N = 24;
const BATCH = 2;
const EXT = ['.png'];

const work = withTempDir('window');
const redis = withRedis();
const models = withModels(work);
const processes: WorkerProcess[] = [];
let pins: Pick<RunSpec, 'stages'>;
let counter = 0;

beforeAll(async () => {
  const cache = testModelCache();
  const spec = (path: string) => colourSpec(path, models.labels);
  pins = {
    stages: [
      { name: 'little', ...(await pinTestModel('little', spec(models.colourLittle), cache)), threshold: 0.9 },
      { name: 'big', ...(await pinTestModel('big', spec(models.colourBig), cache)), threshold: null },
    ],
  };
  await cache.close();
});

afterAll(async () => {
  await Promise.allSettled(processes.map((p) => p.kill9()));
});

/** A run over a fresh folder of N alternating images, its Redis handles, and worker processes on demand. */
async function scenario() {
  const id = `w${++counter}`;
  const images = join(work.path, `images-${id}`);
  await writeAlternatingImages(images, N);
  const prefix = uniquePrefix(`window-${id}`);
  const out = join(work.path, `out-${id}`);
  const configFile = join(work.path, `config-${id}.json`);
  await writeFile(
    configFile,
    JSON.stringify({
      redisUrl: redis.url,
      prefix,
      concurrency: 1,
      intraOpThreads: 1,
      jobLocks: { lockDurationMs: 1500, stalledIntervalMs: 1000, maxStalledCount: 5 },
      sources: { localRoots: [images] },
    }),
  );
  const connection = connectRedis(redis.url);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const spec: RunSpec = {
    runId: `run-${id}`,
    source: images,
    out,
    metric: 'maxprob',
    batchSize: BATCH,
    ...RUN_DEFAULTS,
    ...pins,
    createdAt: new Date().toISOString(),
  };
  // Local folders only: no store client is ever built.
  const stores = new Stores();
  // The source as listed before anything is removed from it: what the manifest must hold.
  const keys: string[] = [];
  for await (const ref of listSource(images, { extensions: EXT })) keys.push(ref);
  return {
    spec,
    prefix,
    keys,
    connection,
    tracker,
    queues,
    source: resumableSource({ source: images, extensions: EXT }, stores),
    output: stores.open(out),
    worker(roles: string[]) {
      const w = spawnWorker(configFile, roles);
      processes.push(w);
      return w;
    },
    state: async () => (await tracker.listingState(spec.runId))!,
    /** Remove the images of batches [0, batches): their rows are in their parts already. */
    removeImages: async (batches: number) => {
      for (const key of keys.slice(0, batches * BATCH)) await rm(key);
    },
    done: () =>
      Promise.race([
        waitForRun(tracker, spec.runId, () => {}, 100),
        sleep(90_000).then(async () => {
          throw new Error(`run not merged: ${JSON.stringify(await tracker.listingState(spec.runId))}`);
        }),
      ]),
    verify: async () => {
      async function* listed() {
        yield* keys;
      }
      return verifyManifest(listed(), readManifestLines(out, stores));
    },
    close: async () => {
      await queues.close();
      connection.disconnect();
    },
  };
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** The stage jobs waiting on the first stage's queue, by batch. */
async function queuedBatches(queues: CascadeQueues): Promise<Map<number, string[]>> {
  const jobs = await queues.stage('little').getJobs(['wait', 'prioritized', 'delayed', 'active'], 0, -1);
  return new Map(jobs.map((j) => [(j.data as StageJob).batch, (j.data as StageJob).items.map((i) => i.ref)]));
}

/** What a first-stage worker would leave of `batch`: its part counted with every image final, its job gone. */
async function finishBatch(s: Awaited<ReturnType<typeof scenario>>, batch: number): Promise<void> {
  const job = await s.queues.stage('little').getJob(`${s.spec.runId}-b${batch}-s0`);
  await job?.remove();
  const n = Math.min(BATCH, s.keys.length - batch * BATCH);
  await s.tracker.finishPart(s.spec.runId, { id: partId(batch, 0), stage: 0, final: n, counts: { images: n, accepted: n, forwarded: 0, errors: 0 } });
}

describe('bounded in-flight work', () => {
  it('queues one window, keeps the cursor in Redis, and lists more only as batches finish; a pass cut off at any step and run again queues each batch once', async () => {
    const s = await scenario();
    try {
      const first = await submitRun({ spec: s.spec, refs: s.source, window: 3, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first).toMatchObject({ images: 6, batches: 3, listing: 'continues', alreadySubmitted: false });
      expect([...(await queuedBatches(s.queues)).keys()].sort()).toEqual([0, 1, 2]);
      expect(await s.queues.listing.getJob(listingJobId(s.spec.runId))).toBeDefined();
      const state = await s.state();
      expect(state).toMatchObject({ images: 6, batches: 3, window: 3, listed: false });
      expect(JSON.parse(state.cursor!)).toEqual({ kind: 'folder', after: s.keys[5]!.slice(s.spec.source.length + 1) });
      // The window is full: a pass lists nothing.
      const pass = (o: Partial<Parameters<typeof listingPass>[0]> = {}) =>
        listingPass({ spec: s.spec, tracker: s.tracker, queues: s.queues, source: s.source, window: 3, warmup: null, fresh: false, jobsPerBulk: 1, ...o });
      expect(await pass()).toMatchObject({ done: false, batches: 3 });
      // Submitting again lists with the run's stored window, not the one asked for now.
      expect(await submitRun({ spec: s.spec, refs: s.source, window: 100, tracker: s.tracker, queues: s.queues, output: s.output })).toMatchObject({
        alreadySubmitted: true,
        images: 6,
        batches: 3,
        listing: 'continues',
      });

      // Cut off right after queueing batch 3, before its cursor is saved; batch 3 even finishes before the pass runs again.
      await finishBatch(s, 0);
      const dying = Object.create(s.queues) as CascadeQueues;
      dying.addStageJobs = async (stage, jobs) => {
        await s.queues.addStageJobs(stage, jobs);
        throw new Error('killed after addBulk');
      };
      await expect(pass({ queues: dying })).rejects.toThrow(/killed after addBulk/);
      expect((await s.state()).batches).toBe(3);
      await finishBatch(s, 3);
      // Cut off right after saving the cursor past batch 3, listed again (and done already).
      await finishBatch(s, 1);
      const forgetful = Object.create(s.tracker) as RunTracker;
      forgetful.saveListing = async (runId, at) => {
        await s.tracker.saveListing(runId, at);
        throw new Error('killed after saving the cursor');
      };
      await expect(pass({ tracker: forgetful })).rejects.toThrow(/killed after saving/);
      expect((await s.state()).batches).toBe(4);
      // Batch 3 ran and is gone: listed again, it is not queued again.
      expect([...(await queuedBatches(s.queues)).keys()].sort()).toEqual([2]);

      // The rest, a batch finished before each look, as workers would, by a process that keeps the
      // listing open between looks: the folder is opened once, and again only when another lister moved the cursor.
      const openListings = new OpenListings();
      let opens = 0;
      const counted = { plan: s.source.plan, open: (...a: Parameters<typeof s.source.open>) => (opens++, s.source.open(...a)) };
      for (let b = 2; ; b++) {
        if (b !== 3) await finishBatch(s, b);
        if (b === 4) await pass({ window: 4 });
        const p = await pass({ source: counted, openListings });
        if (p.done) break;
      }
      expect(opens).toBe(2);
      const st = await s.state();
      expect(st).toMatchObject({ listed: true, images: N, batches: N / BATCH });
      expect((await s.tracker.progress(s.spec.runId))?.total).toBe(N);
    } finally {
      await s.close();
    }
  });

  it('kill -9 of the process topping a run up: another takes the listing job over from the stored cursor; every image exactly once', async () => {
    const s = await scenario();
    try {
      s.worker(['little', 'big']);
      const merge = s.worker(['merge']);
      await merge.waitFor(/worker ready/);
      const first = await submitRun({ spec: s.spec, refs: s.source, window: 1, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first).toMatchObject({ batches: 1, listing: 'continues' });
      await until(async () => (await s.state()).batches >= 4, 'the listing job to top the run up');
      await merge.kill9();
      const at = await s.state();
      expect(at.listed).toBe(false);
      // Nothing lists now; what was queued finishes, and its images go away.
      await until(async () => (await s.state()).final === at.images, 'the queued batches to finish');
      const cut = (await s.state()).batches;
      expect(cut).toBeLessThan(N / BATCH);
      await s.removeImages(cut);
      s.worker(['merge']);
      const summary = await s.done();
      expect(summary.images).toBe(N);
      const report = await s.verify();
      expect([report.ok, report.manifestRows, report.counts.duplicate, report.counts.missing]).toEqual([true, N, 0, 0]);
      expect(report.errorRows).toBe(0);
    } finally {
      await s.close();
    }
  }, 150_000);

  it('kill -9 of the submitter mid-listing: submitting again resumes at the stored cursor; every image exactly once', async () => {
    const s = await scenario();
    try {
      const submitter = await spawnSubmitter(work.path, { redisUrl: redis.url, prefix: s.prefix, spec: s.spec, extensions: EXT, window: 100, delayMs: 150 });
      await submitter.waitFor(/^listed 8$/m, 60_000);
      await submitter.kill9();
      const at = await s.state();
      expect(at).toMatchObject({ listed: false });
      expect(at.images).toBeGreaterThanOrEqual(8);
      expect(at.images).toBeLessThan(N);
      // Its batches run and their images go away before anyone submits again.
      s.worker(['little', 'big', 'merge']);
      await until(async () => (await s.state()).final === at.images, 'the listed batches to finish');
      await s.removeImages(at.batches);
      const again = await submitRun({ spec: s.spec, refs: s.source, window: 100, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(again).toMatchObject({ alreadySubmitted: true, listing: 'done', images: N, batches: N / BATCH });
      const summary = await s.done();
      expect(summary.images).toBe(N);
      const report = await s.verify();
      expect([report.ok, report.manifestRows, report.counts.duplicate, report.counts.missing]).toEqual([true, N, 0, 0]);
      const parts = (await readdir(join(s.spec.out, 'parts'))).filter((p) => p.endsWith('.stage0.json'));
      expect(parts).toHaveLength(N / BATCH);
    } finally {
      await s.close();
    }
  }, 150_000);

  it('writes manifest shards while the run labels (the listing job), and its merge gives the summary and shards of a merge all at the end', async () => {
    const s = await scenario();
    // 2 batches of 2 a shard: 6 shards.
    const spec: RunSpec = { ...s.spec, output: { ...DEFAULT_OUTPUT, jsonl: 'always', shardRows: 4, shardConcurrency: 2 } };
    const records = async () =>
      (await readdir(join(spec.out, MANIFEST_SHARD_SUMMARIES_PREFIX)).catch(() => [] as string[])).filter((f) => /^part-\d+\.json$/.test(f));
    try {
      s.worker(['little', 'big', 'merge']);
      const first = await submitRun({ spec, refs: s.source, window: 1, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first).toMatchObject({ batches: 1, listing: 'continues' });
      await until(async () => (await records()).length > 0, 'a shard written while the run labels');
      expect(await s.tracker.isComplete(spec.runId)).toBe(false);
      const summary = await s.done();
      expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 6 });
      expect((await s.verify()).ok).toBe(true);
      const liveSummary = JSON.parse(await readFile(join(spec.out, 'summary.json'), 'utf8')) as RunSummary;
      const liveShards = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => readFile(join(spec.out, manifestShardKey(i)))));

      // The same run merged all at the end: no shard written before the merge.
      await rm(join(spec.out, MANIFEST_SHARDS_PREFIX), { recursive: true });
      await rm(join(spec.out, MANIFEST_SHARD_SUMMARIES_PREFIX), { recursive: true });
      const merger = new MergeWorker({
        connection: s.connection,
        prefix: s.prefix,
        openOutput: (out) => new Stores().open(out),
        tracker: s.tracker,
        log: () => undefined,
      });
      try {
        await merger.process({ data: { runId: spec.runId } } as Job);
      } finally {
        await merger.close();
      }
      const atEnd = JSON.parse(await readFile(join(spec.out, 'summary.json'), 'utf8')) as RunSummary;
      const untimed = ({ finishedAt: _f, wallSeconds: _w, imagesPerSecond: _i, ...rest }: RunSummary) => JSON.stringify(rest, null, 2);
      expect(untimed(liveSummary)).toBe(untimed(atEnd));
      for (let i = 0; i < 6; i++) expect((await readFile(join(spec.out, manifestShardKey(i)))).equals(liveShards[i]!)).toBe(true);
    } finally {
      await s.close();
    }
  }, 150_000);
});
