/**
 * Timings put into a timing cache by hand, as earlier runs of the same model file would have left
 * them: a test whose verdict must not hinge on this machine's noise (the generated colour models
 * cost about the same, so a measured verdict between them is a coin toss) gives each model a
 * known cost instead. The cache is the real one `cascade calibrate` reads (pipeline/cost/model-timing.ts).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cpuDescription, writeTimingCache } from '../../pipeline/cost/model-timing.js';

/** Seed `<cacheDir>/timings` with `model`'s cost per image, for the numerics a calibration times with. */
export async function seedTiming(cacheDir: string, model: string, ms: { decode: number; infer: number }, numerics = 'exact'): Promise<void> {
  const sha256 = createHash('sha256')
    .update(await readFile(model))
    .digest('hex');
  await writeTimingCache(join(cacheDir, 'timings'), {
    sha256,
    numerics,
    provider: 'cpu',
    workerClass: 'cpu',
    cpu: cpuDescription(),
    decodeSeconds: ms.decode / 1000,
    inferSeconds: ms.infer / 1000,
    images: 12,
    batchSize: 32,
    measuredAt: new Date(0).toISOString(),
    source: 'runs',
  });
}
