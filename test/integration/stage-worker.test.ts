/**
 * The stage worker's job handling against a real redis-server: retries and duplicate
 * deliveries write the same part and count once; a model that fails on the last attempt turns
 * the batch into error rows instead of losing it. Jobs are handed to `process` directly (the
 * same call BullMQ makes) so the attempt number can be set; one test lets BullMQ itself deliver
 * and retry a job, to check the last-attempt logic against the attempt counts BullMQ really sets.
 */
import type { Job } from 'bullmq';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelSpecInput } from '../../config/schema.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { ResultPart } from '../../pipeline/results/manifest.js';
import { partKey } from '../../pipeline/results/output-layout.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { JOB_OPTIONS, type RunSpec, type StageJob } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { StageWorker } from '../../workers/stage-worker.js';
import { OnnxBuilder } from '../helpers/onnx-builder.js';
import { fakePin, localFetch, pinTestModel, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';

const work = withTempDir('stage');
const redis = withRedis();
const models = withModels(work);
const closers: Array<() => Promise<void>> = [];

/** Each scenario's key prefix: its name under this file's own random prefix, so a shared redis-server is safe. */
const filePrefix = uniquePrefix('stage-worker');

async function setup(name: string, modelPath: string, tamper: (run: RunSpec) => void = () => {}, o: { consume?: boolean } = {}) {
  const prefix = `${filePrefix}-${name}`;
  const connection = connectRedis(redis.url);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const spec: ModelSpecInput = colourSpec(modelPath, models.labels);
  // Planned in one cache, labelled with another: a worker is another process than the planner.
  const planner = testModelCache();
  const little = await pinTestModel('little', spec, planner);
  await planner.close();
  const cache = testModelCache();
  const out = join(work.path, prefix);
  const logs: Array<{ msg: string; level?: string; [field: string]: unknown }> = [];
  const worker = new StageWorker({
    connection,
    prefix,
    stage: 'little',
    models: cache,
    concurrency: 1,
    fetch: localFetch,
    fetchConcurrency: 2,
    openOutput: (o) => new LocalStore(o),
    tracker,
    queues,
    log: (msg, fields) => logs.push({ msg, ...fields }),
  });
  // Only `process` is exercised, unless the test wants BullMQ itself to deliver the jobs.
  if (!o.consume) await worker.worker.close();
  closers.push(async () => {
    await worker.close();
    await cache.close();
    await queues.close();
    connection.disconnect();
  });
  const run: RunSpec = {
    runId: 'run1',
    source: work.path,
    out,
    metric: 'maxprob',
    batchSize: 4,
    ...RUN_DEFAULTS,
    limits: { maxBytes: 1e6, maxPixels: 1e6 },
    stages: [
      { name: 'little', ...little, threshold: 0.9 },
      { name: 'big', model: fakePin(models.colourBig), gmacsPerImage: 0, threshold: null },
    ],
    createdAt: new Date().toISOString(),
  };
  tamper(run);
  await tracker.create(run);
  return { worker, tracker, queues, out, cache, run, logs };
}

/**
 * Reshape to [1, 192] holds one 8×8 image: the model loads and passes its probe (one image at a
 * time), then fails at run time on a job's batch of two.
 */
function failingModel(): Uint8Array {
  return new OnnxBuilder({ name: 'failing' })
    .input('input', 'float32', ['N', 3, 8, 8])
    .initializer('shape', 'int64', [2], [1, 192])
    .node('Reshape', ['input', 'shape'], ['out'])
    .output('out', 'float32')
    .build();
}

function fakeJob(data: StageJob, attemptsMade: number): Job {
  return { id: 'x', data, attemptsMade, opts: { ...JOB_OPTIONS } } as unknown as Job;
}

let items: StageJob['items'];

beforeAll(async () => {
  const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .png()
    .toBuffer();
  const grey = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .png()
    .toBuffer();
  await writeFile(join(work.path, 'red.png'), red);
  await writeFile(join(work.path, 'grey.png'), grey);
  items = [
    { ref: join(work.path, 'red.png'), pos: 0 },
    { ref: join(work.path, 'grey.png'), pos: 1 },
    { ref: join(work.path, 'missing.png'), pos: 2 },
  ];
});

afterAll(async () => {
  for (const close of closers) await close();
});

describe('StageWorker.process', () => {
  it('a job delivered twice writes the same part, forwards once and counts once', async () => {
    const { worker, tracker, queues, out } = await setup('dup', models.colourLittle);
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    expect(await worker.process(fakeJob(job, 0))).toEqual({ accepted: 1, forwarded: 1, errors: 1 });
    const first = await readFile(join(out, partKey(0, 0)), 'utf8');
    await worker.process(fakeJob(job, 1));
    const part = ResultPart.parse(JSON.parse(await readFile(join(out, partKey(0, 0)), 'utf8')));
    expect(part.rows.map((r) => ({ pos: r.pos, stage: r.stage, kind: r.error?.kind ?? null }))).toEqual([
      { pos: 0, stage: 'little', kind: null },
      { pos: 2, stage: null, kind: 'not-found' },
    ]);
    expect(ResultPart.parse(JSON.parse(first)).rows).toEqual(part.rows);
    // The grey image was forwarded; its little confidence (below the 0.9 threshold) is kept for the histogram.
    expect(part.forwardedConfidence).toEqual([expect.closeTo(0.319, 3)]);
    expect(await queues.stage('big').getJobCounts('waiting')).toEqual({ waiting: 1 });
    const p = (await tracker.progress('run1'))!;
    expect(p.final).toBe(2);
    expect(p.stages[0]).toEqual({ images: 3, accepted: 1, forwarded: 1, errors: 1 });
  });

  it('a retry after the part was counted reuses it, even if the model now fails: same rows, same forward job', async () => {
    const { worker, tracker, queues, out } = await setup('replay', models.colourLittle);
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    await worker.process(fakeJob(job, 0));
    const first = await readFile(join(out, partKey(0, 0)), 'utf8');
    // The same batch reaches a worker whose model fails, on its last attempt (the job died after counting).
    const failing = join(work.path, 'failing-replay.onnx');
    await writeFile(failing, failingModel());
    const broken = await setup('replay', failing);
    expect(await broken.worker.process(fakeJob(job, 2))).toEqual({ accepted: 1, forwarded: 1, errors: 1 });
    expect(await readFile(join(out, partKey(0, 0)), 'utf8')).toBe(first);
    expect(await queues.stage('big').getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect((await tracker.progress('run1'))!.final).toBe(2);
  });

  it('a model failure is retried, and on the last attempt becomes error rows for the images it ran on, losing nothing', async () => {
    const failing = join(work.path, 'failing.onnx');
    await writeFile(failing, failingModel());
    const { worker, tracker, out } = await setup('fail', failing);
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    await expect(worker.process(fakeJob(job, 0))).rejects.toThrow();
    expect((await tracker.progress('run1'))!.final).toBe(0);
    expect(await worker.process(fakeJob(job, 2))).toEqual({ accepted: 0, forwarded: 0, errors: 3 });
    const part = ResultPart.parse(JSON.parse(await readFile(join(out, partKey(0, 0)), 'utf8')));
    // The missing image keeps its own reason; only the decoded ones failed in the model.
    expect(part.rows.map((r) => r.error?.kind)).toEqual(['inference', 'inference', 'not-found']);
    expect(part.rows[2]!.error?.message).toMatch(/missing\.png/);
    expect((await tracker.progress('run1'))!.final).toBe(3);
  });

  it("BullMQ's own retry: with attempts 2, the first delivery fails and is retried, the second (last) turns the failure into error rows", async () => {
    const failing = join(work.path, 'failing.onnx');
    await writeFile(failing, failingModel());
    const { tracker, queues, out, logs } = await setup('bullmq-retry', failing, undefined, { consume: true });
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    await queues.stage('little').add('batch', job, { ...JOB_OPTIONS, attempts: 2, backoff: { type: 'fixed', delay: 10 }, jobId: 'retried' });
    const deadline = Date.now() + 30_000;
    const settled = async () => (await tracker.progress('run1'))!.final === 3 || (await queues.stage('little').getFailedCount()) > 0;
    while (!(await settled()) && Date.now() < deadline) await sleep(50);
    const part = ResultPart.parse(JSON.parse(await readFile(join(out, partKey(0, 0)), 'utf8')));
    expect(part.rows.map((r) => r.error?.kind)).toEqual(['inference', 'inference', 'not-found']);
    expect((await tracker.progress('run1'))!.final).toBe(3);
    // One failed delivery, logged as retried (warn, attempt 1 of 2); the second completed.
    expect(logs.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => [l.level, l.attempt, l.attempts, l.final])).toEqual([
      ['warn', 1, 2, false],
    ]);
    expect(await queues.stage('little').getJobCounts('failed', 'waiting', 'delayed', 'active')).toEqual({ failed: 0, waiting: 0, delayed: 0, active: 0 });
  });

  it('refuses a model whose file no longer matches the run: the job fails with the reason, and no part is written', async () => {
    const moved = join(work.path, 'moved-model.onnx');
    await writeFile(moved, await readFile(models.colourLittle));
    const { worker, out } = await setup('swapped', moved);
    // Someone replaces the file after the run was planned.
    await writeFile(moved, await readFile(models.colourBig));
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    await expect(worker.process(fakeJob(job, 2))).rejects.toThrow(
      /stage little: model .*moved-model\.onnx has sha256 [0-9a-f]{12}, but the run pins [0-9a-f]{12}: the file changed since the run was planned/,
    );
    await expect(readFile(join(out, partKey(0, 0)))).rejects.toThrow(/ENOENT/);
  });

  it('refuses a model whose probe outputs differ from the run reference beyond the tolerance, naming the platforms and the difference', async () => {
    // The reference as another machine might have recorded it: every probability 0.05 higher.
    const { worker, out, run } = await setup('probe', models.colourLittle, (r) => {
      const probe = r.stages[0]!.model.probe;
      probe.outputs = probe.outputs.map((o) => ({ ...o, top: o.top.map(([c, p]) => [c, p + 0.05] as [number, number]) }));
      probe.platform = { arch: 'x64', cpuFlags: ['avx2', 'fma'], onnxruntime: '1.30.0' };
    });
    const job: StageJob = { runId: 'run1', batch: 0, stage: 0, items };
    const err = await worker.process(fakeJob(job, 2)).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.name).toBe('ModelRefusedError');
    expect(err?.message).toMatch(
      /^stage little refuses model .* for run run1: its probe outputs differ from the run's reference by up to 0\.05\d* \(tolerance 0\.002\); this worker: x64 \[[a-z0-9_ ]*\], onnxruntime \d+\.\d+\.\d+, provider cpu, numerics exact; reference: x64 \[avx2 fma\], onnxruntime 1\.30\.0, provider cpu$/,
    );
    await expect(readFile(join(out, partKey(0, 0)))).rejects.toThrow(/ENOENT/);
    // Within a looser tolerance the same worker labels the run.
    const loose = await setup('probe-loose', models.colourLittle, (r) => {
      r.probeTolerance = 0.06;
      r.stages[0]!.model.probe = run.stages[0]!.model.probe;
    });
    expect(await loose.worker.process(fakeJob(job, 0))).toEqual({ accepted: 1, forwarded: 1, errors: 1 });
    const part = ResultPart.parse(JSON.parse(await readFile(join(loose.out, partKey(0, 0)), 'utf8')));
    expect(part.writer).toMatchObject({
      pid: process.pid,
      provider: 'cpu',
      numerics: 'exact',
      sha256: run.stages[0]!.model.sha256,
      probeMaxDiff: expect.closeTo(0.05, 5),
    });
  });
});
