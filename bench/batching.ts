/**
 * What batch accumulation buys on the one real model with a dynamic batch dimension
 * (MobileNetV2): the big stage's forwarded jobs are small, so compare sending each job's
 * images as its own call with stacking jobs into full batches through the accumulator.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModelSpec } from '../config/load-config.js';
import { InferencePool } from '../pipeline/inference/inference-pool.js';
import { preprocessImage } from '../pipeline/image/preprocess.js';
import { REPO_ROOT, findAssets, listPhotos } from './assets.js';
import { median } from './stats.js';

export interface BatchingResult {
  jobImages: number;
  maxBatch: number;
  /** images/s sending one call per job, and through the accumulator. */
  perJob: number;
  accumulated: number;
}

/** Interleave `repeats` rounds of: `jobs` jobs of `jobImages` images, without and with accumulation. */
export async function batchingBench(log: (line: string) => void, jobs = 32, jobImages = 8, repeats = 3): Promise<BatchingResult | null> {
  const assets = findAssets();
  if ('missing' in assets) {
    log(`batching: skipped: ${assets.missing}`);
    return null;
  }
  const spec = await loadModelSpec(join(REPO_ROOT, 'config/models/mobilenetv2.yaml'));
  const photos = await listPhotos(assets.dir, jobImages);
  const base = {
    executionProviders: ['cpu'] as const,
    intraOpThreads: 0,
    threads: 1,
    output: spec.output,
    maxBatch: spec.maxBatch,
    graphOptimization: spec.graphOptimization,
  };
  const [plain, accumulating] = await Promise.all([
    InferencePool.open(spec.path, { ...base, accumulateMs: 0 }),
    InferencePool.open(spec.path, { ...base, accumulateMs: 50 }),
  ]);
  try {
    const shape = { height: plain.io.height, width: plain.io.width, dtype: plain.io.inputDtype };
    const tensors = await Promise.all(photos.map(async (p) => preprocessImage(await readFile(p), spec.preprocess, shape, { maxPixels: 1e8 })));
    const job = () => {
      const out = new Float32Array(tensors.length * tensors[0]!.length);
      tensors.forEach((t, i) => out.set(t, i * t.length));
      return out;
    };
    const time = async (pool: InferencePool) => {
      const started = performance.now();
      // All jobs in flight at once, as a big worker with accumulateJobs of them holds.
      await Promise.all(Array.from({ length: jobs }, () => pool.infer(job(), jobImages)));
      return (jobs * jobImages) / ((performance.now() - started) / 1000);
    };
    await time(plain);
    await time(accumulating);
    const a: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < repeats; r++) {
      a.push(await time(plain));
      b.push(await time(accumulating));
    }
    return { jobImages, maxBatch: spec.maxBatch, perJob: median(a), accumulated: median(b) };
  } finally {
    await Promise.all([plain.close(), accumulating.close()]);
  }
}
