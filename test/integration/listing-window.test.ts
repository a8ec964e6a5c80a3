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
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, parse } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OUTPUT } from '../../config/schema.js';
import type { RunSummary } from '../../pipeline/results/manifest.js';
import { MANIFEST_SHARD_SUMMARIES_PREFIX, MANIFEST_SHARDS_PREFIX, manifestShardKey } from '../../pipeline/results/output-layout.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { listInputs, resumableSource } from '../../producers/inputs/input-formats.js';
import { asListed, type ListedInput } from '../../producers/inputs/listed-input.js';
import { listingPass, OpenListings } from '../../producers/run-listing.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { listingJobId, partId, type RunSpec, type StageJob } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { colourSpec, writeAlternatingImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { parquetBytes, sampleMembers, tarShard } from '../helpers/shard-fixture.js';
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

/** Samples per shard of a sharded scenario: batches of 2, 2, 1 per shard, so batches end at shard ends too. */
const SHARD = 5;

/**
 * A run over N alternating images, its Redis handles, and worker processes on demand: a fresh
 * folder of them, or the same images as WebDataset tar shards or Parquet files of SHARD samples
 * each (`shards-<id>/{0..4}.tar`: brace names stay the same when a shard is removed).
 */
async function scenario(kind: 'folder' | 'tar' | 'parquet' = 'folder') {
  const id = `w${++counter}`;
  const images = join(work.path, `images-${id}`);
  await writeAlternatingImages(images, N);
  const shards = join(work.path, `shards-${id}`);
  const shardCount = Math.ceil(N / SHARD);
  const source = kind === 'folder' ? images : join(shards, `{0..${shardCount - 1}}.${kind}`);
  if (kind !== 'folder') await writeShards(images, shards, kind);
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
      sources: { localRoots: [kind === 'folder' ? images : shards] },
    }),
  );
  const connection = connectRedis(redis.url);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const spec: RunSpec = {
    runId: `run-${id}`,
    source,
    out,
    metric: 'maxprob',
    batchSize: BATCH,
    ...RUN_DEFAULTS,
    ...pins,
    createdAt: new Date().toISOString(),
  };
  // Local files only: no store client is ever built.
  const stores = new Stores();
  // The source as listed before anything is removed from it: what the manifest must hold.
  const inputs: ListedInput[] = [];
  for await (const entry of listInputs(source, { extensions: EXT, stores })) inputs.push(asListed(entry));
  const keys = inputs.map((i) => i.ref);
  // The batches one listing from the start cuts: BATCH inputs at most, never across a shard.
  const cut: string[][] = [];
  for (const [i, input] of inputs.entries()) {
    const open = cut.at(-1);
    if (open && open.length < BATCH && input.shard === inputs[i - 1]!.shard) open.push(input.ref);
    else cut.push([input.ref]);
  }
  return {
    spec,
    prefix,
    keys,
    cut,
    configFile,
    connection,
    tracker,
    queues,
    source: resumableSource({ source, extensions: EXT }, stores),
    output: stores.open(out),
    worker(roles: string[]) {
      const w = spawnWorker(configFile, roles);
      processes.push(w);
      return w;
    },
    state: async () => (await tracker.listingState(spec.runId))!,
    /**
     * Remove the inputs of batches [0, batches): their rows are in their parts already. A sharded
     * source loses the shards whose every batch is among them (a listing from the start would
     * then list a not-found row for each, and number the rest wrongly).
     */
    removeImages: async (batches: number) => {
      const done = new Set(cut.slice(0, batches).flat());
      const gone =
        kind === 'folder'
          ? keys.filter((k) => done.has(k))
          : [...new Set(inputs.map((i) => i.shard!))].filter((sh) => inputs.every((i) => i.shard !== sh || done.has(i.ref)));
      for (const file of gone) await rm(file);
      return gone.length;
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

/** The images of `images` (in name order) as shards of SHARD samples: tar members or Parquet rows `key`, `png`. */
async function writeShards(images: string, shards: string, kind: 'tar' | 'parquet'): Promise<void> {
  await mkdir(shards);
  const names = (await readdir(images)).sort(compareKeys);
  for (let k = 0; k * SHARD < names.length; k++) {
    const part = names.slice(k * SHARD, (k + 1) * SHARD);
    const bytes = await Promise.all(part.map((n) => readFile(join(images, n))));
    const keys = part.map((n) => parse(n).name);
    const file =
      kind === 'tar'
        ? await tarShard(keys.flatMap((key, j) => sampleMembers(key, 'png', bytes[j]!)))
        : parquetBytes([
            { name: 'key', data: keys, type: 'STRING' },
            { name: 'png', data: bytes.map((b) => new Uint8Array(b)), type: 'BYTE_ARRAY' },
          ]);
    await writeFile(join(shards, `${k}.${kind}`), file);
  }
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
  const n = s.cut[batch]!.length;
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

  it.each([
    { kind: 'folder' as const, topped: 4 },
    { kind: 'parquet' as const, topped: 5 },
  ])(
    'kill -9 of the process topping a $kind run up: another takes the listing job over from the stored cursor; every image exactly once',
    async ({ kind, topped }) => {
      const s = await scenario(kind);
      try {
        s.worker(['little', 'big']);
        const merge = s.worker(['merge']);
        await merge.waitFor(/worker ready/);
        const first = await submitRun({ spec: s.spec, refs: s.source, window: 1, tracker: s.tracker, queues: s.queues, output: s.output });
        expect(first).toMatchObject({ batches: 1, listing: 'continues' });
        await until(async () => (await s.state()).batches >= topped, 'the listing job to top the run up');
        await merge.kill9();
        const at = await s.state();
        expect(at.listed).toBe(false);
        // Nothing lists now; what was queued finishes, and its inputs go away.
        await until(async () => (await s.state()).final === at.images, 'the queued batches to finish');
        const cut = (await s.state()).batches;
        expect(cut).toBeLessThan(s.cut.length);
        expect(await s.removeImages(cut)).toBeGreaterThan(0);
        s.worker(['merge']);
        const summary = await s.done();
        expect(summary.images).toBe(N);
        const report = await s.verify();
        expect([report.ok, report.manifestRows, report.counts.duplicate, report.counts.missing, report.errorRows]).toEqual([true, N, 0, 0, 0]);
      } finally {
        await s.close();
      }
    },
    150_000,
  );

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

  /**
   * Lists `s` to the end as workers would drain it: every queued batch finishes before each
   * look, every other look by a process that keeps the listing open (the others open it again
   * at the stored cursor, as the listing job does after the submitter). Checks each look's
   * queue with `check`; returns the batches queued, by batch, in order.
   */
  async function drain(s: Awaited<ReturnType<typeof scenario>>, o: { window: number; windowBytes?: number }, check: (queued: Map<number, StageJob>) => void) {
    const seen = new Map<number, StageJob>();
    const openListings = new OpenListings();
    const look = async () => {
      const jobs = await s.queues.stage('little').getJobs(['wait', 'prioritized', 'delayed', 'active'], 0, -1);
      const queued = new Map(jobs.map((j) => [(j.data as StageJob).batch, j.data as StageJob]));
      check(queued);
      for (const [b, job] of queued) seen.set(b, job);
      return queued;
    };
    for (let round = 0; ; round++) {
      // Bounded: a listing that does not move on from its stored cursor fails here instead of hanging.
      expect(round).toBeLessThan(3 * s.cut.length);
      for (const b of (await look()).keys()) await finishBatch(s, b);
      const pass = await listingPass({
        spec: s.spec,
        tracker: s.tracker,
        queues: s.queues,
        source: s.source,
        ...o,
        warmup: null,
        fresh: false,
        ...(round % 2 ? { openListings } : {}),
      });
      if (pass.done) break;
    }
    await look();
    await openListings.close();
    return [...seen.keys()].sort((a, b) => a - b).map((b) => seen.get(b)!);
  }

  it('tar shards and Parquet files list under the window from a shard cursor kept in Redis: at most the window queued, the batches of one listing from the start', async () => {
    for (const kind of ['tar', 'parquet'] as const) {
      const s = await scenario(kind);
      try {
        const first = await submitRun({ spec: s.spec, refs: s.source, window: 2, tracker: s.tracker, queues: s.queues, output: s.output });
        expect(first).toMatchObject({ images: 4, batches: 2, listing: 'continues' });
        expect(JSON.parse((await s.state()).cursor!)).toEqual({
          kind: 'shard',
          shard: 0,
          name: join(work.path, s.spec.source.split('/').at(-2)!, `0.${kind}`),
          sample: 4,
        });
        expect(JSON.parse((await s.state()).plan!)).toEqual({ source: s.spec.source, extensions: EXT });
        const jobs = await drain(s, { window: 2 }, (queued) => expect(queued.size).toBeLessThanOrEqual(2));
        // Batch for batch what one listing cuts: SHARD samples a shard, BATCH a batch, none across two shards.
        expect(jobs.map((j) => j.items.map((i) => i.ref))).toEqual(s.cut);
        expect(jobs.every((j) => j.items.every((i) => i.at !== undefined))).toBe(true);
        expect(await s.state()).toMatchObject({ listed: true, images: N, batches: s.cut.length, duplicates: 0 });
      } finally {
        await s.close();
      }
    }
  });

  it('a byte budget (window.bytes) holds the queued first-stage payload under it, whichever bound is hit first, and frees a batch when its last image is final', async () => {
    const s = await scenario('tar');
    try {
      const size = (j: StageJob) => Buffer.byteLength(JSON.stringify(j));
      // Room for about three of these batches' payloads: the byte bound binds long before 100 batches.
      const budget = 1000 + Math.floor(Math.random() * 200);
      let sawFull = 0;
      const first = await submitRun({ spec: s.spec, refs: s.source, window: 100, windowBytes: budget, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first.listing).toBe('continues');
      expect((await s.state()).windowBytes).toBe(budget);
      const snapshots: number[][] = [];
      const jobs = await drain(s, { window: 100, windowBytes: budget }, (queued) => {
        const bytes = [...queued.values()].reduce((n, j) => n + size(j), 0);
        expect(bytes).toBeLessThanOrEqual(budget);
        if (queued.size >= 2) sawFull++;
        snapshots.push([...queued.keys()].sort((a, b) => a - b));
      });
      expect(jobs.map((j) => j.items.map((i) => i.ref))).toEqual(s.cut);
      // Tight: each look that stopped short of the source's end stopped because the next batch would not fit.
      for (const batches of snapshots.slice(0, -1)) {
        if (batches.length === 0) continue;
        const next = jobs[batches.at(-1)! + 1];
        if (next) expect(batches.reduce((n, b) => n + size(jobs[b]!), 0) + size(next)).toBeGreaterThan(budget);
      }
      expect(sawFull).toBeGreaterThan(0);
      // Every batch final: nothing is held in flight any more.
      for (const b of snapshots.at(-1)!) await finishBatch(s, b);
      expect((await s.state()).bytesInFlight).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('kill -9 of the submitter mid-listing of tar shards: submitting again resumes at the stored shard cursor; every sample exactly once', async () => {
    const s = await scenario('tar');
    try {
      const submitter = await spawnSubmitter(work.path, { redisUrl: redis.url, prefix: s.prefix, spec: s.spec, extensions: EXT, window: 100, delayMs: 150 });
      await submitter.waitFor(/^listed 1[0-9]$/m, 60_000);
      await submitter.kill9();
      const at = await s.state();
      expect(at).toMatchObject({ listed: false });
      expect(JSON.parse(at.cursor!)).toMatchObject({ kind: 'shard' });
      expect(at.images).toBeLessThan(N);
      // Its batches run, and the shards they used up go away, before anyone submits again.
      s.worker(['little', 'big', 'merge']);
      await until(async () => (await s.state()).final === at.images, 'the listed batches to finish');
      expect(await s.removeImages(at.batches)).toBeGreaterThan(0);
      const again = await submitRun({ spec: s.spec, refs: s.source, window: 100, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(again).toMatchObject({ alreadySubmitted: true, listing: 'done', images: N, batches: s.cut.length });
      const summary = await s.done();
      expect(summary.images).toBe(N);
      const report = await s.verify();
      expect([report.ok, report.manifestRows, report.counts.duplicate, report.counts.missing, report.errorRows]).toEqual([true, N, 0, 0, 0]);
    } finally {
      await s.close();
    }
  }, 150_000);

  /** Shard records in `out`: shards written, live or by the merge. */
  const shardRecords = async (out: string) =>
    (await readdir(join(out, MANIFEST_SHARD_SUMMARIES_PREFIX)).catch(() => [] as string[])).filter((f) => /^part-\d+\.json$/.test(f));

  /**
   * Waits for the run `spec` of `s` (6 shards) to merge, checks it, then merges it again all at
   * the end, no shard written before: its summary.json and shards must be the same.
   */
  async function expectSameAsMergeAtEnd(s: Awaited<ReturnType<typeof scenario>>, spec: RunSpec): Promise<void> {
    const summary = await s.done();
    expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 6 });
    expect((await s.verify()).ok).toBe(true);
    const liveSummary = JSON.parse(await readFile(join(spec.out, 'summary.json'), 'utf8')) as RunSummary;
    const liveShards = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => readFile(join(spec.out, manifestShardKey(i)))));
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
  }

  // 2 batches of 2 a shard: 6 shards.
  const SIX_SHARDS = { ...DEFAULT_OUTPUT, jsonl: 'always' as const, shardRows: 4, shardConcurrency: 2 };

  it('writes manifest shards while the run labels (the listing job), and its merge gives the summary and shards of a merge all at the end', async () => {
    const s = await scenario();
    const spec: RunSpec = { ...s.spec, output: SIX_SHARDS };
    try {
      s.worker(['little', 'big', 'merge']);
      const first = await submitRun({ spec, refs: s.source, window: 1, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first).toMatchObject({ batches: 1, listing: 'continues' });
      await until(async () => (await shardRecords(spec.out)).length > 0, 'a shard written while the run labels');
      expect(await s.tracker.isComplete(spec.runId)).toBe(false);
      await expectSameAsMergeAtEnd(s, spec);
    } finally {
      await s.close();
    }
  }, 150_000);

  it('a run listed whole in its first pass gets the listing job for its shards alone: they are written while it labels, the job ends with the run; a run of one shard gets no job', async () => {
    const s = await scenario();
    const spec: RunSpec = { ...s.spec, output: SIX_SHARDS };
    const jobId = listingJobId(spec.runId);
    try {
      const first = await submitRun({ spec, refs: s.source, window: 100, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(first).toMatchObject({ images: N, batches: N / BATCH, listing: 'done' });
      // A submitter that died before queueing the job: submitting again queues it.
      await (await s.queues.listing.getJob(jobId))!.remove();
      const again = await submitRun({ spec, refs: s.source, window: 100, tracker: s.tracker, queues: s.queues, output: s.output });
      expect(again).toMatchObject({ alreadySubmitted: true, listing: 'done' });
      expect(await s.queues.listing.getJob(jobId)).toBeDefined();
      // The last batch held back: the run cannot complete, whatever the workers' pace, until the shards of the others are there.
      const last = await s.queues.stage('little').getJob(`${spec.runId}-b${N / BATCH - 1}-s0`);
      const held = last!.data as StageJob;
      await last!.remove();
      s.worker(['little', 'big', 'merge']);
      await until(async () => (await shardRecords(spec.out)).length === 5, 'shards 0–4 written while the run labels');
      expect(await s.tracker.isComplete(spec.runId)).toBe(false);
      await s.queues.addStageJobs('little', [held]);
      await expectSameAsMergeAtEnd(s, spec);
      // The job ended with the run: nothing polls it any more.
      await until(async () => (await s.queues.listing.getJob(jobId)) === undefined, 'the listing job to end');

      // One shard (the default shardRows): listed whole, nothing but the stage jobs is queued.
      const single = await scenario();
      try {
        expect(
          await submitRun({ spec: single.spec, refs: single.source, window: 100, tracker: single.tracker, queues: single.queues, output: single.output }),
        ).toMatchObject({
          listing: 'done',
        });
        expect(await single.queues.listing.getJob(listingJobId(single.spec.runId))).toBeUndefined();
      } finally {
        await single.close();
      }
    } finally {
      await s.close();
    }
  }, 150_000);

  it('a listing held open that went stale (an idle stream closed) fails that pass only: the run is not failed, and the next pass opens the source again at the stored cursor', async () => {
    const s = await scenario('tar');
    try {
      await submitRun({ spec: s.spec, refs: s.source, window: 2, tracker: s.tracker, queues: s.queues, output: s.output });
      await finishBatch(s, 0);
      const state = await s.state();
      const openListings = new OpenListings();
      const stale: AsyncIterator<never> = {
        next: () => Promise.reject(new Error('aborted: socket closed while idle')),
        return: async () => ({ done: true, value: undefined }),
      };
      openListings.keep(s.spec.runId, { at: state.cursor, refs: stale, duplicates: state.duplicates, ahead: [] });
      const pass = () =>
        listingPass({ spec: s.spec, tracker: s.tracker, queues: s.queues, source: s.source, window: 2, warmup: null, fresh: false, openListings });
      await expect(pass()).rejects.toThrow(/held open since the last pass failed \(aborted: socket closed while idle\)/);
      expect((await s.state()).failedReason).toBeNull();
      expect(await pass()).toMatchObject({ done: false, batches: 3 });
      expect((await queuedBatches(s.queues)).get(2)).toEqual(s.cut[2]);
      await openListings.close();
    } finally {
      await s.close();
    }
  });
});
