/**
 * The timing probe (pipeline/cost/model-timing.ts) on real onnxruntime sessions of generated
 * models and real image files: a deliberately slow model costs at least its known arithmetic, a
 * tiny one far less; a cached timing is returned without touching an image; a probe that cannot
 * read its images or runs past its limit is one clear error.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_USAGE } from '../../config/errors.js';
import { PreprocessSpec } from '../../config/schema.js';
import { InferencePool, type PoolOptions } from '../../pipeline/inference/inference-pool.js';
import type { StageModel } from '../../pipeline/models/loaded-model.js';
import { cpuDescription, modelTiming, probeModelTiming, readTimingCache, TimingProbeError } from '../../pipeline/cost/model-timing.js';
import { withModels, withTempDir } from '../helpers/fixtures.js';
import { slowBranchMacs, writeSlowModels } from '../helpers/slow-models.js';
import { readFile } from 'node:fs/promises';

const work = withTempDir('timing');
const models = withModels(work);
const preprocess = PreprocessSpec.parse({ resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' });
const K = 1024;
const MATMULS = 4;
// No core multiplies faster than this (AVX-512: 2 FMA units × 16 lanes × 4 GHz is 128 G/s), so
// the slow branch's MACs over it bound its CPU seconds from below on any machine.
const PEAK_MACS_PER_CORE_SECOND = 256e9;
const options: PoolOptions = { executionProviders: ['cpu'], intraOpThreads: 1, threads: 1, output: 'probabilities', maxBatch: 8, graphOptimization: 'all' };
const refs: string[] = [];
let slow: StageModel;
let fast: StageModel;
const read = (ref: string) => readFile(ref);
const deps = { fetch: read, maxPixels: 1e8, sha256: 'a'.repeat(64), numerics: 'exact' };

beforeAll(async () => {
  const slowModels = await writeSlowModels(join(work.path, 'slow'), { k: K, matmuls: MATMULS });
  slow = { name: 'slow', pool: await InferencePool.open(slowModels.big, options), preprocess, labels: null };
  fast = { name: 'fast', pool: await InferencePool.open(models.colourBig, options), preprocess, labels: null };
  for (let i = 0; i < 6; i++) {
    const ref = join(work.path, `img-${i}.png`);
    await writeFile(
      ref,
      await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 40 * i, g: 255 - 40 * i, b: 90 } } })
        .png()
        .toBuffer(),
    );
    refs.push(ref);
  }
});

afterAll(async () => {
  await slow?.pool.close();
  await fast?.pool.close();
});

describe('probeModelTiming', () => {
  it("measures a slow model's CPU seconds at or above its arithmetic, and a tiny model's far below", async () => {
    const opts = { batchSize: 1, timeoutMs: 120_000 };
    const s = await probeModelTiming(slow, refs, deps, opts);
    const f = await probeModelTiming(fast, refs, deps, opts);
    expect(s.inferSeconds).toBeGreaterThanOrEqual(slowBranchMacs(K, MATMULS, 1) / PEAK_MACS_PER_CORE_SECOND);
    expect(f.inferSeconds).toBeLessThan(s.inferSeconds / 10);
    for (const t of [s, f]) {
      expect(t).toMatchObject({
        images: refs.length,
        batchSize: 1,
        provider: 'cpu',
        workerClass: 'cpu',
        source: 'probe',
        numerics: 'exact',
        cpu: cpuDescription(),
      });
      expect(t.decodeSeconds).toBeGreaterThan(0);
    }
  });

  it('leaves unreadable images out, and fails in one line when none can be read', async () => {
    const junk = join(work.path, 'junk.png');
    await writeFile(junk, 'not an image');
    const t = await probeModelTiming(fast, [junk, ...refs.slice(0, 2)], deps, { batchSize: 2, timeoutMs: 60_000 });
    expect(t.images).toBe(2);
    const err = await probeModelTiming(fast, [junk, junk], deps, { batchSize: 2, timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimingProbeError);
    expect((err as TimingProbeError).exitCode).toBe(EXIT_USAGE);
    expect((err as Error).message).toMatch(/^cannot time fast: none of the 2 images could be read/);
    expect((err as Error).message).not.toContain('\n');
  });

  it('gives up at its time limit with a one-line error', async () => {
    // An image store that never answers: the probe must not wait for it forever.
    const hung = { ...deps, fetch: () => new Promise<Buffer>(() => {}) };
    const err = await probeModelTiming(fast, refs, hung, { batchSize: 2, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimingProbeError);
    expect((err as Error).message).toBe('timing fast took longer than 0.2 s; give fewer probe images');
  });
  it('past its limit during an inference call, gives up when the call returns, never with one in flight', async () => {
    // Closing a pool under a running call aborts the process, so the error must wait for the call.
    const err = await probeModelTiming(slow, refs, deps, { batchSize: 1, timeoutMs: 60 }).catch((e: unknown) => e);
    expect(InferencePool.tasksInFlight()).toBe(0);
    expect((err as Error).message).toBe('timing slow took longer than 0.06 s; give fewer probe images');
  });
});

describe('modelTiming', () => {
  it('probes once, stores the timing, and then answers from the cache without reading an image', async () => {
    const cacheDir = join(work.path, 'cache');
    const first = await modelTiming(fast, refs, deps, { batchSize: 4, timeoutMs: 60_000, cacheDir });
    expect(await readdir(cacheDir)).toHaveLength(1);
    expect(await readTimingCache(cacheDir, { ...first })).toEqual(first);
    let reads = 0;
    const counting = {
      ...deps,
      fetch: (ref: string) => {
        reads++;
        return read(ref);
      },
    };
    const again = await modelTiming(fast, refs, counting, { batchSize: 4, timeoutMs: 60_000, cacheDir });
    expect(again).toEqual(first);
    expect(reads).toBe(0);
    // Another numerics is another key: measured afresh.
    const native = await modelTiming(fast, refs, { ...counting, numerics: 'native' }, { batchSize: 4, timeoutMs: 60_000, cacheDir });
    expect(native.numerics).toBe('native');
    expect(reads).toBeGreaterThan(0);
    expect(await readdir(cacheDir)).toHaveLength(2);
  });
});
