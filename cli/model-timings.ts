/**
 * The I/O half of model timing for the CLI and benchmarks: open a model alone in this process
 * and take its timing from the timing cache, or probe it on sample images and store the result
 * (pipeline/cost/model-timing.ts).
 */
import { type ModelSpec, referenceNumerics } from '../config/schema.js';
import { defaultTimingCacheDir, type ModelTiming, modelTiming } from '../pipeline/cost/model-timing.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { type DataContext, withOpenModel } from './calibration-data.js';

export interface TimeModelOptions {
  /** Seconds the probe may take. */
  timeoutSeconds: number;
  /** Timing cache directory; null: probe and store nothing. Default defaultTimingCacheDir(). */
  cacheDir?: string | null;
}

/** The model's measured timing on this machine at the config's batch size, numerics and providers. */
export async function timeModel(name: string, spec: ModelSpec, sample: readonly string[], ctx: DataContext, o: TimeModelOptions): Promise<ModelTiming> {
  const { config } = ctx;
  let timing: ModelTiming | undefined;
  await withOpenModel(name, spec, ctx, async (model) => {
    timing = await modelTiming(
      model,
      sample,
      {
        fetch: (ref) => fetchRef(ref, { s3: ctx.s3 }, { maxBytes: config.limits.maxBytes, localRoots: ctx.localRoots }),
        maxPixels: config.limits.maxPixels,
        sha256: model.sha256,
        // What the timed session ran: under 'auto' the exact reference kernels (withOpenModel).
        numerics: referenceNumerics(config.numerics),
      },
      { batchSize: config.batchSize, timeoutMs: o.timeoutSeconds * 1000, cacheDir: o.cacheDir === undefined ? defaultTimingCacheDir() : o.cacheDir },
    );
  });
  const t = timing!;
  ctx.log(`${name}: timing from ${t.images} images at batch ${t.batchSize}, measured ${t.measuredAt}`);
  return t;
}

/** `count` refs spread evenly over a listing (listings are sorted, often by class). */
export function spreadSample(refs: readonly string[], count: number): string[] {
  if (refs.length <= count) return [...refs];
  return Array.from({ length: count }, (_, i) => refs[Math.floor((i * refs.length) / count)]!);
}
