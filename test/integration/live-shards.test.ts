/**
 * Manifest shards written while the run labels (pipeline/results/live-shards.ts, driven by the
 * listing job): against a real redis-server (the run tracker says which parts are counted) and
 * s3rver (the output), shards appear before the run completes, only for batch ranges whose
 * every part is counted; the final merge writes the rest and gives the summary and the Parquet
 * bytes of a merge done all at the end; DuckDB reads the shards as the JSONL manifest's rows; a
 * live pass killed -9 mid-shard leaves no shard counted as written without its bytes, and the
 * merge after it gives the same output.
 */
import { duckRows } from '../helpers/duckdb.js';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OUTPUT, type OutputSettings } from '../../config/schema.js';
import type { ResultPart, RunSummary } from '../../pipeline/results/manifest.js';
import { type MergeInput, mergeRun } from '../../pipeline/results/merge-run.js';
import { auditKey, MANIFEST_KEY, manifestShardKey, manifestShardSummaryKey, partKey, RUN_MARKER_KEY } from '../../pipeline/results/output-layout.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import type { ObjectStore } from '../../pipeline/storage/object-store.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { ListingWorker } from '../../workers/listing-worker.js';
import { writeGeneratedRun } from '../helpers/generated-parts.js';
import { spawnLiveShards } from '../helpers/live-shards-process.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { fakeRunSpec } from '../helpers/run-spec.js';
import { startS3, type TestS3 } from '../helpers/s3.js';

let dir: string;
let redis: TestRedis;
let conn: Redis;
let s3: TestS3;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-live-shards-'));
  [redis, s3] = await Promise.all([startRedis(), startS3({ buckets: ['runs'] })]);
  conn = connectRedis(redis.url);
}, 60_000);

afterAll(async () => {
  conn?.disconnect();
  await Promise.all([redis?.stop(), s3?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

// 24 batches of 8 in shards of 16 rows: 2 batches a shard, 12 shards.
const BATCHES = 24;
const BATCH_SIZE = 8;
const OUTPUT: OutputSettings = { ...DEFAULT_OUTPUT, jsonl: 'always', shardRows: 16, shardConcurrency: 2 };
const NOW = () => new Date(5000);

/** Count a batch's parts in the tracker as its stage jobs would (first stage, then the next if it forwarded). */
async function countBatch(tracker: RunTracker, store: ObjectStore, runId: string, batch: number, stages = 2): Promise<void> {
  for (let stage = 0; stage < stages; stage++) {
    const part = JSON.parse((await store.get(partKey(batch, stage))).toString('utf8')) as ResultPart;
    const { images, accepted, forwarded, errors } = part.stats;
    await tracker.finishPart(runId, { id: `b${batch}s${stage}`, stage, final: part.rows.length, counts: { images, accepted, forwarded, errors } });
    if (forwarded === 0) return;
  }
}

/** Everything but the times of a summary, as JSON. */
function untimed(summary: RunSummary): string {
  const { finishedAt: _f, wallSeconds: _w, imagesPerSecond: _i, ...rest } = summary;
  return JSON.stringify(rest, null, 2);
}

/** The same generated run merged all at the end in a fresh local folder: the reference. */
async function mergedAtEnd(name: string, like: MergeInput, output = OUTPUT) {
  const root = join(dir, name);
  const store = new LocalStore(root);
  const input = await writeGeneratedRun(store, { runId: like.runId, batches: like.batches, batchSize: like.batchSize, seed: 3 });
  const { summary } = await mergeRun(store, { ...input, out: like.out, output }, NOW);
  return { root, store, input, summary };
}

describe('manifest shards written while the run labels', () => {
  it('appear in S3 before the run completes, for fully counted batch ranges only; the merge then matches one done at the end', async () => {
    const runId = 'live-1';
    const prefix = uniquePrefix('live');
    const out = 's3://runs/live-1/';
    const spec = fakeRunSpec(runId, { out, batchSize: BATCH_SIZE, output: OUTPUT });
    const tracker = new RunTracker(conn, prefix);
    const queues = new CascadeQueues(conn, prefix);
    const worker = new ListingWorker({ connection: conn, prefix, tracker, queues, stores: s3.stores, log: () => undefined });
    const store = s3.stores.open(out);
    try {
      await tracker.create(spec);
      await store.put(RUN_MARKER_KEY, JSON.stringify({ runId, specHash: 'x', createdAt: new Date(0).toISOString() }));
      const input = await writeGeneratedRun(store, { runId, batches: BATCHES, batchSize: BATCH_SIZE, seed: 3 });
      // Mid-run: every part of batches 0–7 counted, batches 8–9 only their first stage (a forwarded
      // batch there is not final yet), and 16 of 24 batches listed.
      for (let b = 0; b < 8; b++) await countBatch(tracker, store, runId, b);
      for (let b = 8; b < 10; b++) await countBatch(tracker, store, runId, b, 1);
      const forwardedIn8or9 = await Promise.all(
        [8, 9].map(async (b) => (JSON.parse((await store.get(partKey(b, 0))).toString()) as ResultPart).stats.forwarded > 0),
      );
      expect(forwardedIn8or9.some(Boolean)).toBe(true);
      await tracker.saveListing(runId, { images: 16 * BATCH_SIZE, batches: 16, duplicates: 0, cursor: null });
      await conn.hset(`${prefix}:run:${runId}`, 'listing', JSON.stringify({ source: spec.source }));
      // The listing itself has nothing to list here (no plan it can open): drive the shard pass alone.
      await conn.hset(`${prefix}:run:${runId}`, 'listed', 1);

      expect(await worker.process({ data: { runId } } as Job)).toBe('waiting');
      expect(await tracker.isComplete(runId)).toBe(false);
      const keys = async (p: string) => {
        const found: string[] = [];
        for await (const { key } of store.list(p)) found.push(key);
        return found.sort();
      };
      expect(await keys('manifest/')).toEqual([0, 1, 2, 3].map(manifestShardKey));
      expect(await keys('_cascade/manifest/')).toEqual([0, 1, 2, 3].map(manifestShardSummaryKey));

      // The rest counts; the run completes; nothing more is written live (the merge's job now).
      for (let b = 8; b < BATCHES; b++) await countBatch(tracker, store, runId, b);
      expect(await tracker.finishListing(runId, BATCHES * BATCH_SIZE, BATCHES)).toBe(true);
      expect(await worker.process({ data: { runId } } as Job)).toBe('nothing-to-do');
      expect(await keys('manifest/')).toHaveLength(4);

      const { summary } = await mergeRun(store, { ...input, output: OUTPUT }, NOW);
      const reference = await mergedAtEnd('reference-1', input);
      expect(untimed(summary)).toBe(untimed(reference.summary));
      expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 12 });
      for (let i = 0; i < 12; i++) expect((await store.get(manifestShardKey(i))).equals(await reference.store.get(manifestShardKey(i)))).toBe(true);
      expect((await store.get(MANIFEST_KEY)).equals(await reference.store.get(MANIFEST_KEY))).toBe(true);

      // DuckDB reads the shards (some written live, some by the merge) as the JSONL manifest, row for row.
      const local = join(dir, 'live-1-download');
      await rm(local, { recursive: true, force: true });
      const localStore = new LocalStore(local);
      for (let i = 0; i < 12; i++) await localStore.put(manifestShardKey(i), await store.get(manifestShardKey(i)));
      const fromDuck = await duckRows(
        `SELECT * EXCLUDE (filename, file_row_number) FROM read_parquet('${join(local, 'manifest', '*.parquet')}', filename = true, file_row_number = true) ORDER BY filename, file_row_number`,
      );
      const fromJsonl = (await store.get(MANIFEST_KEY))
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(fromDuck).toEqual(fromJsonl);
    } finally {
      await worker.close();
      await queues.close();
    }
  }, 120_000);

  /**
   * A listed run of 4 batches (2 shards), every part written and counted, in `dir`/`folder`, whose
   * run marker names `owner`; and a listing worker to look at it.
   */
  async function listedRun(runId: string, folder: string, owner: string) {
    const prefix = uniquePrefix('live');
    const root = join(dir, folder);
    const tracker = new RunTracker(conn, prefix);
    const queues = new CascadeQueues(conn, prefix);
    const worker = new ListingWorker({ connection: conn, prefix, tracker, queues, stores: s3.stores, log: () => undefined });
    await tracker.create(fakeRunSpec(runId, { out: root, batchSize: BATCH_SIZE, output: OUTPUT }));
    const store = new LocalStore(root);
    await store.put(RUN_MARKER_KEY, JSON.stringify({ runId: owner, specHash: 'x', createdAt: new Date(0).toISOString() }));
    await writeGeneratedRun(store, { runId, batches: 4, batchSize: BATCH_SIZE, seed: 3 });
    for (let b = 0; b < 4; b++) await countBatch(tracker, store, runId, b);
    await tracker.saveListing(runId, { images: 4 * BATCH_SIZE, batches: 4, duplicates: 0, cursor: null });
    await conn.hset(`${prefix}:run:${runId}`, 'listed', 1);
    const close = async () => {
      await worker.close();
      await queues.close();
    };
    return { root, tracker, worker, close };
  }

  it('a run whose output another run took over gets no shard written', async () => {
    const runId = 'live-2';
    const { root, worker, close } = await listedRun(runId, 'fenced', 'the-new-run');
    try {
      expect(await worker.process({ data: { runId } } as Job)).toBe('nothing-to-do');
      expect(await readdir(root)).not.toContain('manifest');
    } finally {
      await close();
    }
  });

  it('a listed run with a job failed for good ends its listing job and writes nothing live (the run waits for `cascade retry`; its merge writes the shards)', async () => {
    const runId = 'live-5';
    const { root, tracker, worker, close } = await listedRun(runId, 'job-failed', runId);
    try {
      await tracker.recordJobFailure(runId, `${runId}-b4-s0`, 'storage down');
      expect(await worker.process({ data: { runId } } as Job)).toBe('nothing-to-do');
      expect(await readdir(root)).not.toContain('manifest');
      // The failure alone held them back: without it, the same look writes both.
      await tracker.clearJobFailures(runId);
      expect(await worker.process({ data: { runId } } as Job)).toBe('nothing-to-do');
      expect(await readdir(join(root, 'manifest'))).toHaveLength(2);
    } finally {
      await close();
    }
  });

  it('a live pass killed -9 mid-shard leaves no record without its shard; the merge after it gives the same output', async () => {
    const runId = 'live-3';
    const [batches, batchSize] = [120, 32];
    const output: OutputSettings = { ...OUTPUT, shardRows: 128, shardConcurrency: 1 };
    const root = join(dir, 'killed');
    const store = new LocalStore(root);
    const input: MergeInput = await writeGeneratedRun(store, { runId, batches, batchSize, seed: 3 });
    const child = await spawnLiveShards(dir, {
      root,
      run: { runId, stages: ['little', 'big'], batchSize, output, audits: false, batches, listed: true },
      putDelayMs: 40,
    });
    const recordFiles = async () => (await readdir(join(root, '_cascade', 'manifest')).catch(() => [] as string[])).filter((f) => /^part-\d+\.json$/.test(f));
    const records = async () => (await recordFiles()).length;
    const deadline = Date.now() + 60_000;
    while ((await records()) < 2 && Date.now() < deadline) await sleep(10);
    await child.kill9();
    const written = await recordFiles();
    // Killed mid-pass: some shards have their record, not all (30 in all).
    expect(written.length).toBeGreaterThanOrEqual(2);
    expect(written.length).toBeLessThan(30);
    const reference = await mergedAtEnd('reference-3', input, output);
    // Every shard counted as written has its bytes, the same as a merge at the end writes.
    for (const f of written) {
      const index = Number(/part-(\d+)\.json/.exec(f)![1]);
      expect((await readFile(join(root, manifestShardKey(index)))).equals(await readFile(join(reference.root, manifestShardKey(index))))).toBe(true);
    }
    // What a kill between a shard's bytes and its record leaves: bytes (here torn) without a record.
    const torn = written.length;
    await writeFile(join(root, manifestShardKey(torn)), 'PAR1 torn');
    // And a record that is not one (torn, or of another version): its shard is written again too.
    await writeFile(join(root, manifestShardKey(torn + 1)), 'PAR1 torn');
    await writeFile(join(root, manifestShardSummaryKey(torn + 1)), '{"runId": "live-3", "shard": ');
    const { summary } = await mergeRun(store, { ...input, output }, NOW);
    expect(untimed(summary)).toBe(untimed(reference.summary));
    for (let i = 0; i < 30; i++)
      expect((await readFile(join(root, manifestShardKey(i)))).equals(await readFile(join(reference.root, manifestShardKey(i))))).toBe(true);
    expect(await readFile(join(root, MANIFEST_KEY), 'utf8')).toBe(await readFile(join(reference.root, MANIFEST_KEY), 'utf8'));
  }, 120_000);

  it('waits for the audit parts of a shard to be counted, and folds their agreement as a merge at the end does', async () => {
    const runId = 'live-4';
    const prefix = uniquePrefix('live');
    const root = join(dir, 'audited');
    const batches = 8;
    const spec = fakeRunSpec(runId, { out: root, batchSize: BATCH_SIZE, output: OUTPUT, audit: { fraction: 0.5, seed: '1' } });
    const tracker = new RunTracker(conn, prefix);
    const queues = new CascadeQueues(conn, prefix);
    const worker = new ListingWorker({ connection: conn, prefix, tracker, queues, stores: s3.stores, log: () => undefined });
    // Even batches promise one audit each (its first stage part says so); the audit part agrees on batches 0 and 4.
    const audited = async (store: ObjectStore) => {
      const input = await writeGeneratedRun(store, { runId, batches, batchSize: BATCH_SIZE, seed: 3 });
      for (let b = 0; b < batches; b += 2) {
        const part = JSON.parse((await store.get(partKey(b, 0))).toString('utf8')) as ResultPart;
        await store.put(partKey(b, 0), JSON.stringify({ ...part, audits: 1 }));
        const answer = (label: number) => ({ stage: 'little', label, labelName: null, confidence: 0.9 });
        const entry = { key: `k${b}`, pos: 0, little: answer(1), big: answer(b % 4 === 0 ? 1 : 2), agree: b % 4 === 0, error: null };
        await store.put(auditKey(b), JSON.stringify({ runId, batch: b, entries: [entry] }));
      }
      return { ...input, audit: { fraction: 0.5 } };
    };
    try {
      await tracker.create(spec);
      const store = new LocalStore(root);
      const input = await audited(store);
      for (let b = 0; b < batches; b++) await countBatch(tracker, store, runId, b);
      await tracker.finishAudit(runId, { id: 'b0audit', audited: 1, agreeing: 1 });
      await tracker.saveListing(runId, { images: batches * BATCH_SIZE, batches, duplicates: 0, cursor: null });
      await conn.hset(`${prefix}:run:${runId}`, 'listed', 1);
      expect(await worker.process({ data: { runId } } as Job)).toBe('waiting');
      expect(await readdir(join(root, 'manifest'))).toEqual(['part-00000.parquet']);
      for (const b of [2, 4, 6]) await tracker.finishAudit(runId, { id: `b${b}audit`, audited: 1, agreeing: b % 4 === 0 ? 1 : 0 });
      expect(await worker.process({ data: { runId } } as Job)).toBe('nothing-to-do');
      expect(await readdir(join(root, 'manifest'))).toHaveLength(4);

      const { summary } = await mergeRun(store, { ...input, output: OUTPUT }, NOW);
      const refRoot = join(dir, 'audited-reference');
      const refStore = new LocalStore(refRoot);
      const refInput = await audited(refStore);
      const reference = await mergeRun(refStore, { ...refInput, out: input.out, output: OUTPUT }, NOW);
      expect(summary.audit).toMatchObject({ sampled: 4, agreeing: 2 });
      expect(untimed(summary)).toBe(untimed(reference.summary));
    } finally {
      await worker.close();
      await queues.close();
    }
  });
});
