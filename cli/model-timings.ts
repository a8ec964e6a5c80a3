/**
 * The I/O half of model timing for the CLI and benchmarks: open a model alone in this process
 * and take its timing from the timing cache, or probe it on sample images and store the result
 * (pipeline/cost/model-timing.ts).
 */
import { join } from 'node:path';
import { type ModelSpec, referenceNumerics } from '../config/schema.js';
import { defaultTimingCacheDir, type ModelTiming, modelTiming } from '../pipeline/cost/model-timing.js';
import { type DataContext, imageReader, withOpenModel } from './calibration-data.js';
import type { MeasuredModel } from '../pipeline/cost/verdict.js';

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
        fetch: imageReader(ctx),
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

/**
 * Where timings are cached for a command's `--cache` option: beside the default probability cache,
 * inside a `--cache <dir>` given (so a test or a user's own cache folder holds both), nowhere with `--no-cache`.
 */
export function timingCacheFor(cache: string | false | undefined): string | null {
  if (cache === false) return null;
  return cache === undefined ? defaultTimingCacheDir() : join(cache, 'timings');
}

/** Each model's measured cost per image on this machine, for a cost verdict (timing cache or probe). */
export async function measureModels(
  models: ReadonlyArray<{ name: string; spec: ModelSpec }>,
  refs: readonly string[],
  ctx: DataContext,
  o: { probeImages?: number; probeTimeout?: number; cache?: string | false },
): Promise<MeasuredModel[]> {
  const sample = spreadSample(refs, o.probeImages ?? 32);
  const measured: MeasuredModel[] = [];
  for (const m of models) {
    const t = await timeModel(m.name, m.spec, sample, ctx, { timeoutSeconds: o.probeTimeout ?? 300, cacheDir: timingCacheFor(o.cache) });
    measured.push({ name: m.name, workerClass: t.workerClass, decodeSeconds: t.decodeSeconds, inferSeconds: t.inferSeconds, source: t.source });
  }
  return measured;
}

/** `count` refs spread evenly over a listing (listings are sorted, often by class). */
export function spreadSample(refs: readonly string[], count: number): string[] {
  if (refs.length <= count) return [...refs];
  return Array.from({ length: count }, (_, i) => refs[Math.floor((i * refs.length) / count)]!);
}
