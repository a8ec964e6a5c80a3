/**
 * The merge step's claims, on a real run (colour models, real redis-server): merging twice writes
 * the same bytes; the merge job delivered again by BullMQ leaves the manifest as it was; a merge
 * that cannot read a part fails for good and records why on the run (markMergeFailed), so a
 * waiting `cascade run` or `status` stops instead of waiting for ever.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from 'bullmq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { RunSummary } from '../../pipeline/results/manifest.js';
import { partKey } from '../../pipeline/results/output-layout.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { mergeJobId } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { RunFailedError, waitForRun } from '../../queue/wait-for-run.js';
import { MergeWorker } from '../../workers/merge-worker.js';
import { colourSpec, writeColourImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

const work = withTempDir('merge');
const redis = withRedis();
const models = withModels(work);
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  vi.useRealTimers();
  while (closers.length) await closers.pop()!();
});

/** A finished run of the colour images (merged once by `cascade run`), and a merge worker on its prefix. */
async function finishedRun(name: string, o: { consume: boolean }) {
  const images = join(work.path, 'images');
  await writeColourImages(images);
  const prefix = uniquePrefix(`merge-${name}`);
  const config = join(work.path, `${name}.json`);
  await writeFile(
    config,
    JSON.stringify({
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      threshold: 0.9,
      batchSize: 4,
      redisUrl: redis.url,
      prefix,
    }),
  );
  const out = join(work.path, `out-${name}`);
  const summary = await runCommand(images, { out, config, progress: false, json: true });
  const connection = connectRedis(redis.url);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const logs: Array<{ msg: string; level?: string }> = [];
  const worker = new MergeWorker({ connection, prefix, openOutput: (o) => new LocalStore(o), tracker, log: (msg, f) => logs.push({ msg, level: f?.level }) });
  // Only `process` is called by hand in some tests: then BullMQ must not take the job itself.
  if (!o.consume) await worker.worker.close();
  closers.push(async () => {
    await worker.close();
    await queues.close();
    connection.disconnect();
  });
  const job = (await queues.merge.getJob(mergeJobId(summary.runId))) as Job;
  const read = (file: string) => readFile(join(out, file));
  return { summary, out, tracker, queues, worker, job, logs, read };
}

/** Waits until `check` holds (a merge job in BullMQ's hands), failing after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const OUTPUTS = ['manifest.jsonl', 'summary.json', 'confidence.svg', 'confidence.png'];

describe('merge idempotency', () => {
  it('merging a run twice writes the same bytes', async () => {
    const run = await finishedRun('twice', { consume: false });
    const manifest = await run.read('manifest.jsonl');
    // The summary carries the merge time: the same clock for both merges.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-02T03:04:05.000Z'));
    await run.worker.process(run.job);
    const first = await Promise.all(OUTPUTS.map(run.read));
    await run.worker.process(run.job);
    const second = await Promise.all(OUTPUTS.map(run.read));
    for (const [i, file] of OUTPUTS.entries()) expect(second[i]!.equals(first[i]!), file).toBe(true);
    // The rows are those `cascade run` merged the first time.
    expect(first[0]!.equals(manifest)).toBe(true);
    expect(RunSummary.parse(JSON.parse(first[1]!.toString())).finishedAt).toBe('2026-01-02T03:04:05.000Z');
  });

  it('the merge job delivered again by BullMQ leaves the same manifest and summary (bar the merge time)', async () => {
    const run = await finishedRun('again', { consume: true });
    const [manifest, summary] = await Promise.all([run.read('manifest.jsonl'), run.read('summary.json')]);
    const finishedOn = run.job.finishedOn;
    await run.job.retry('completed');
    await until('the merge job to complete again', async () => {
      const job = await run.queues.merge.getJob(run.job.id!);
      return (await job?.getState()) === 'completed' && job!.finishedOn !== finishedOn;
    });
    expect((await run.read('manifest.jsonl')).equals(manifest)).toBe(true);
    const timeless = (s: RunSummary) => ({ ...s, finishedAt: '', wallSeconds: 0, imagesPerSecond: 0 });
    const again = RunSummary.parse(JSON.parse((await run.read('summary.json')).toString()));
    expect(timeless(again)).toEqual(timeless(RunSummary.parse(JSON.parse(summary.toString()))));
    expect(again.finishedAt > run.summary.finishedAt).toBe(true);
    const progress = (await run.tracker.progress(run.summary.runId))!;
    expect(progress.mergeError).toBeNull();
    expect(RunSummary.parse(JSON.parse((await run.tracker.summary(run.summary.runId))!))).toEqual(again);
    expect(run.logs.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
  });

  it('a merge that cannot read a part fails for good and records why on the run', async () => {
    const run = await finishedRun('missing', { consume: true });
    await rm(join(run.out, partKey(1, 0)));
    await run.job.retry('completed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    // The merge job's backoff (2 s, 4 s, 8 s, 16 s) is not under test: promote each retry at once.
    await until(
      'the merge to fail for good',
      async () => {
        await run.queues.merge.promoteJobs();
        return (await (await run.queues.merge.getJob(run.job.id!))?.getState()) === 'failed';
      },
      60_000,
    );
    const failed = (await run.queues.merge.getJob(run.job.id!))!;
    expect(failed.attemptsMade).toBe(5);
    expect(failed.failedReason).toMatch(/parts\/00000001\.stage0\.json/);
    await until('markMergeFailed', async () => (await run.tracker.progress(run.summary.runId))!.mergeError !== null);
    expect((await run.tracker.progress(run.summary.runId))!.mergeError).toBe(failed.failedReason);
    await expect(waitForRun(run.tracker, run.summary.runId, () => {}, 50)).rejects.toBeInstanceOf(RunFailedError);
    // Four failures logged at warn while retried, the fifth at error.
    expect(run.logs.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.level)).toEqual(['warn', 'warn', 'warn', 'warn', 'error']);
  }, 90_000);
});
