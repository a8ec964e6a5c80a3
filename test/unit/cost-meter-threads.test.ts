/**
 * The process's CPU cost meter on real onnxruntime sessions in one process: a tiny colour model's
 * jobs, whose calls wait to fill a batch, run while a slow generated model's job has calls in
 * flight, under CPU contention from busy-looping child processes (every decode and call waits for
 * a core, as on a loaded worker). Each call is charged the CPU its thread measured: the tiny
 * model's jobs pay their own decodes and calls, not a share of the slow calls they overlapped.
 * Shared by work in flight instead, the slow job was charged 15–20 ms per image for calls whose
 * thread used 26–29 ms per image, the rest going to the tiny model's jobs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreprocessSpec } from '../../config/schema.js';
import { classifyBatch, type BatchItem } from '../../pipeline/classify-batch.js';
import { type CostMeter, processMeters } from '../../pipeline/cost/cost-meter.js';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { threadCpuSeconds } from '../../pipeline/inference/thread-cpu.js';
import type { StageModel } from '../../pipeline/models/loaded-model.js';
import { meteredDeps } from '../../workers/classify-part.js';
import { writeSlowModels } from '../helpers/slow-models.js';
import { LABELS, writeTestModels } from '../helpers/test-models.js';

let dir: string;
let little: StageModel;
let big: StageModel;
const batch: BatchItem[] = [];
const preprocess = PreprocessSpec.parse({ resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' });
const decision = { threshold: 0.9, metric: 'maxprob' as const };
const deps = { fetch: (ref: string) => readFile(ref), maxPixels: 1e6, fetchConcurrency: 4, inferChunk: 1 };
// Linux only: elsewhere no thread's CPU can be read and the meter shares the whole clock as before.
const measurable = threadCpuSeconds('self') !== null;

async function open(path: string, name: string, accumulateMs = 0): Promise<StageModel> {
  const pool = await InferencePool.open(path, {
    executionProviders: ['cpu'],
    intraOpThreads: 1,
    threads: 1,
    output: 'auto',
    maxBatch: 32,
    graphOptimization: 'all',
    accumulateMs,
  });
  return { name, pool, preprocess, labels: [...LABELS] };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-meter-'));
  // The tiny colour model with a dynamic batch, its requests held up to 40 ms to fill a batch (as on a
  // GPU worker, or accumulateMs on a CPU one): each of its calls is in flight long beside the slow ones.
  little = await open((await writeTestModels(join(dir, 'models'))).colourBig, 'little', 40);
  // As the schedule test's self-calibrating firing: a dead branch of 17 products of 512×512 matrices per call.
  big = await open((await writeSlowModels(join(dir, 'slow'), { k: 512, matmuls: 16 })).big, 'big');
  for (let pos = 0; pos < 4; pos++) {
    const ref = join(dir, `img-${pos}.png`);
    await writeFile(
      ref,
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255 * (pos % 2), g: 0, b: 0 } } })
        .png()
        .toBuffer(),
    );
    batch.push({ ref, pos });
  }
});

afterAll(async () => {
  await little?.pool.close();
  await big?.pool.close();
  await rm(dir, { recursive: true, force: true });
});

/** One stage job as classify-part runs it (a slice of the meter, classifyBatch reporting to it): its charge, its images and its calls' thread CPU. */
async function job(meter: CostMeter, model: StageModel): Promise<{ seconds: number; images: number; callCpu: number }> {
  const slice = meter.begin();
  let callCpu = 0;
  let images = 0;
  let seconds = 0;
  try {
    const m = meteredDeps(meter, slice, model.pool, 2);
    const onCallCpu = (s: number) => {
      callCpu += s;
      m.onCallCpu?.(s);
    };
    const r = await classifyBatch(batch, model, decision, { ...deps, ...m, onCallCpu });
    images = r.stats.images - r.stats.errors;
  } finally {
    seconds = meter.end(slice);
  }
  return { seconds, images, callCpu };
}

/** The little model's jobs one after another, `rounds` of them or until `done`: their charged seconds and images. */
async function littleJobs(meter: CostMeter, until: { rounds: number } | (() => boolean)): Promise<{ seconds: number; images: number }> {
  let seconds = 0;
  let images = 0;
  for (let round = 1; ; round++) {
    const r = await job(meter, little);
    seconds += r.seconds;
    images += r.images;
    if (typeof until === 'function' ? until() : round >= until.rounds) return { seconds, images };
  }
}

/** Busy-looping child processes for as long as `fn` runs: every thread of this process waits for a core. */
async function underContention<T>(fn: () => Promise<T>): Promise<T> {
  const children: ChildProcess[] = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    return await fn();
  } finally {
    for (const c of children) c.kill('SIGKILL');
  }
}

describe.skipIf(!measurable)('the CPU cost meter with slow and tiny models in one process', () => {
  it('reads the pool threads live: their CPU grows by at least what each call measured on its thread', async () => {
    const before = InferencePool.threadCpuSeconds();
    const r = await big.pool.infer(new Float32Array(3 * 64), 1);
    expect(r.cpuSeconds).toBeGreaterThan(0);
    expect(InferencePool.threadCpuSeconds() - before).toBeGreaterThanOrEqual(r.cpuSeconds! - 1e-9);
  });

  it('charges the slow calls to their job and the tiny model only its own work', async () => {
    const meter = processMeters().cpu;
    expect(meter.measuresCalls).toBe(true);
    // The little model's jobs alone first: what they cost per image here, under the same contention.
    const { alone, beside, bigJob } = await underContention(async () => {
      const alone = await littleJobs(meter, { rounds: 8 });
      let finished = false;
      const bigRun = job(meter, big).finally(() => (finished = true));
      const beside = await littleJobs(meter, () => finished);
      return { alone, beside, bigJob: await bigRun };
    });
    const perImage = (r: { seconds: number; images: number }) => (1000 * r.seconds) / r.images;
    const detail = JSON.stringify({ aloneMs: perImage(alone), besideMs: perImage(beside), bigMs: perImage(bigJob), bigCallCpu: bigJob.callCpu });
    // Each slow call's thread time is its job's: the tiny jobs overlapping it took none of it.
    expect(bigJob.seconds, detail).toBeGreaterThanOrEqual(bigJob.callCpu);
    // Beside the slow job the tiny model costs what it costs alone (noise allowed), far below the slow one.
    expect(perImage(beside), detail).toBeLessThan(3 * perImage(alone) + 1);
    expect(perImage(beside), detail).toBeLessThan(perImage(bigJob) / 10);
  }, 120_000);
});
