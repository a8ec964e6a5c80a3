/**
 * The I/O half of calibration for the CLI: list the images, run each model once over them
 * (or take its rows from the probability cache), match ground-truth labels, and build the
 * ground truth that pipeline/calibration/tables.ts pairs into calibration/test tables.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CascadeError } from '../config/errors.js';
import { type CascadeConfig, type ConfidenceMetric, type ModelSpec, referenceNumerics } from '../config/schema.js';
import { parseGroundTruth } from '../pipeline/calibration/ground-truth.js';
import { defaultCacheDir, modelFingerprint, ProbabilityCache, type ScoredImages } from '../pipeline/calibration/prob-cache.js';
import type { CalibrateOptions as CalibrateRuleOptions, CalibrationRule } from '../pipeline/calibration/calibrate.js';
import type { RiskMethod } from '../pipeline/calibration/risk-control.js';
import { createLogger, registerBar } from './logger.js';
import { TerminalBar } from './progress-bar.js';
import { scoreImages } from '../pipeline/calibration/score-images.js';
import type { ScoredModel } from '../pipeline/calibration/tables.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { isRemoteUrl } from '../pipeline/storage/location.js';
import { Stores } from '../pipeline/storage/stores.js';
import { readReviews } from '../pipeline/reviews/reviews-file.js';
import { relativeName } from '../pipeline/calibration/tables.js';
import { ConfigError } from '../config/load-config.js';
import { ModelCache } from '../pipeline/models/model-cache.js';
import { type PlannedModel, planModel } from '../pipeline/models/plan-model.js';
import { defaultProbeCacheDir, ProbeCache } from '../pipeline/models/probe-cache.js';
import type { LoadedModel } from '../pipeline/models/loaded-model.js';
import { defaultLocalRoots, listSource } from '../producers/list-source.js';

/** The flags shared by calibrate, calibrate --stages and search-saver. */
export interface CalibrationCliOptions {
  images: string;
  labels?: string;
  rule?: CalibrationRule;
  /** Guaranteed rules: the promise may fail with probability at most delta. */
  delta?: number;
  method?: RiskMethod;
  maxDrop?: number;
  targetAgreement?: number;
  metric?: ConfidenceMetric[];
  calibrationFraction?: number;
  /** A directory, or false for no cache; default defaultCacheDir(). */
  cache?: string | false;
  config?: string;
  json?: boolean;
  progress?: boolean;
  /** Images each model's timing probe runs on (default 32, spread over the listing). */
  probeImages?: number;
  /** Seconds a model's timing probe may take (default 300). */
  probeTimeout?: number;
}

/** The rule settings of the CLI options, as the calibration library takes them. */
export function ruleOptions(o: CalibrationCliOptions): CalibrateRuleOptions {
  return { rule: o.rule, delta: o.delta, method: o.method, maxDrop: o.maxDrop, targetAgreement: o.targetAgreement, metrics: o.metric };
}

export interface DataContext {
  config: CascadeConfig;
  /** The command's object stores (clients built on first use). */
  stores: Stores;
  /** null disables the cache. */
  cache: ProbabilityCache | null;
  log: (msg: string) => void;
  progress: boolean;
  /** Where images may be read from locally: the config's `sources.localRoots`, else the `--images` source's folder. */
  localRoots?: readonly string[];
}

/** A context for the command's flags: logger, cache, local roots, and the stores (clients built on first use). */
export function dataContext(config: CascadeConfig, o: Pick<CalibrationCliOptions, 'cache' | 'progress'> & { images?: string }): DataContext {
  const logger = createLogger();
  const cacheDir = o.cache === false ? null : (o.cache ?? defaultCacheDir());
  const localRoots = config.sources.localRoots ?? (o.images === undefined ? undefined : defaultLocalRoots(o.images));
  return {
    config,
    stores: new Stores(config),
    cache: cacheDir ? new ProbabilityCache(cacheDir) : null,
    log: (msg) => logger.info(msg),
    progress: o.progress !== false,
    localRoots,
  };
}

/** The source's image refs, in listing order (local ones absolute). */
export async function listImages(source: string, ctx: DataContext): Promise<string[]> {
  const src = isRemoteUrl(source) ? source : resolve(source);
  const refs: string[] = [];
  for await (const ref of listSource(src, { extensions: ctx.config.extensions, stores: ctx.stores })) refs.push(ref);
  if (refs.length === 0) throw new Error(`no images found in ${source} (extensions ${ctx.config.extensions.join(' ')})`);
  return refs;
}

/**
 * Run a model over the refs it has no cached rows for, and return rows for all of them, with the
 * model's pin (hash and conformance probe on this machine) for calib.json.
 */
export async function scoreModel(name: string, spec: ModelSpec, refs: readonly string[], ctx: DataContext): Promise<ScoredModel> {
  const { config } = ctx;
  // An 'auto' run labels with exact numbers (or native ones within the probe tolerance of them): calibrate on exact ones.
  const numerics = referenceNumerics(config.numerics);
  const fingerprint = await modelFingerprint(spec, numerics).catch((err: Error) => {
    throw new Error(`cannot read model ${spec.path}: ${err.message}`);
  });
  const cached = (await ctx.cache?.read(fingerprint)) ?? null;
  const scored: ScoredImages = cached ?? { classes: 0, probs: new Map(), errors: new Map() };
  const missing = refs.filter((r) => !scored.probs.has(r) && !scored.errors.has(r));
  ctx.log(`${name}: ${refs.length - missing.length} of ${refs.length} images cached${missing.length ? `, scoring ${missing.length}` : ''}`);
  const { pin, gmacsPerImage } = await withOpenModel(name, spec, ctx, async (model) => {
    if (missing.length > 0) await scoreMissing(name, model, missing, scored, ctx);
  });
  if (missing.length > 0) await ctx.cache?.write(fingerprint, spec.path, scored);
  return { name, path: spec.path, gmacsPerImage, scored, pin: { sha256: pin.sha256, numerics, probe: pin.probe } };
}

/** Pin a model (hash, GMACs, conformance probe), open it alone in this process for `use`, and close it after. */
export async function withOpenModel(name: string, spec: ModelSpec, ctx: DataContext, use: (model: LoadedModel) => Promise<void>): Promise<PlannedModel> {
  const { config } = ctx;
  const models = new ModelCache({
    runtime: { executionProviders: config.executionProviders, threads: config.inferenceThreads, intraOpThreads: config.intraOpThreads },
    capacity: 1,
    read: (ref) => fetchRef(ref, ctx.stores),
    downloadDir: config.modelDir,
    // --no-cache runs the models afresh, their probes included.
    probeCache: ctx.cache ? new ProbeCache(defaultProbeCacheDir()) : null,
    log: ctx.log,
  });
  try {
    const planned = await planModel(name, spec, config.numerics, models);
    const lease = await models.acquireUnverified(name, planned.pin, referenceNumerics(config.numerics));
    try {
      await use(lease.model);
    } finally {
      lease.release();
    }
    return planned;
  } finally {
    await models.close();
  }
}

/** Score `missing` with an open model, adding their rows (or errors) to `scored`. */
async function scoreMissing(name: string, model: LoadedModel, missing: readonly string[], scored: ScoredImages, ctx: DataContext): Promise<void> {
  const { config } = ctx;
  {
    const bar = ctx.progress && process.stderr.isTTY ? new TerminalBar(`${name} `) : null;
    bar?.update(0, missing.length);
    // Log lines go above the bar, never through it.
    const unregisterBar = bar ? registerBar(bar) : () => {};
    try {
      const fresh = await scoreImages(
        missing,
        model,
        {
          fetch: (ref) => fetchRef(ref, ctx.stores, { maxBytes: config.limits.maxBytes, localRoots: ctx.localRoots }),
          maxPixels: config.limits.maxPixels,
          fetchConcurrency: config.fetchConcurrency,
          batchSize: config.batchSize,
        },
        (done) => bar?.update(done, missing.length),
      );
      if (scored.classes !== 0 && fresh.classes !== 0 && fresh.classes !== scored.classes)
        throw new Error(`${name}: cached rows have ${scored.classes} classes, fresh ones ${fresh.classes}`);
      if (fresh.classes !== 0) scored.classes = fresh.classes;
      for (const [k, v] of fresh.probs) scored.probs.set(k, v);
      for (const [k, v] of fresh.errors) scored.errors.set(k, v);
    } finally {
      unregisterBar();
      bar?.stop();
    }
  }
}

/** Read a ground-truth CSV (local path or remote URL) into name → class index. */
export async function readGroundTruth(file: string, ctx: DataContext): Promise<Map<string, number>> {
  const bytes = isRemoteUrl(file) ? await fetchRef(file, ctx.stores) : await readFile(file);
  return parseGroundTruth(bytes.toString('utf8'), file);
}

/** Ground truth from a reviewed run: the images and their human classes, and how many reviews were left out. */
export interface ReviewTruth {
  keys: Set<string>;
  /** Class by name relative to the `--images` source, as the labels CSV would give it. */
  truth: Map<string, number>;
  used: number;
  leftOut: number;
  /** The latest review's time, when the files said. */
  latest: string | null;
}

/**
 * The human labels of a reviewed run (its reviews.jsonl) as calibration ground truth. Only the
 * random slice (`export review --budget`) is a fair sample of the run's images; the picks were
 * chosen because the cascade looked wrong, so they are left out unless `all` asks for them.
 */
export async function readReviewTruth(run: string, source: string, ctx: DataContext, all = false): Promise<ReviewTruth> {
  const store = ctx.stores.open(run);
  const reviews = await readReviews(store);
  if (reviews.length === 0) throw new ConfigError(`no reviews in ${store.describe()}: import them first (cascade import reviews)`);
  const used = all ? reviews : reviews.filter((r) => r.reasons.includes('random'));
  if (used.length === 0)
    throw new ConfigError(
      `none of the ${reviews.length} reviews in ${store.describe()} is of a random slice, the only fair calibration sample: ` +
        'review an `export review --budget` export, or pass --all-reviews to use the picked ones (biased)',
    );
  const times = used.map((r) => r.reviewedAt).filter((t) => t !== null);
  return {
    keys: new Set(used.map((r) => r.key)),
    truth: new Map(used.map((r) => [relativeName(r.key, source), r.label])),
    used: used.length,
    leftOut: reviews.length - used.length,
    latest: times.length ? times.reduce((a, b) => (Date.parse(b) > Date.parse(a) ? b : a)) : null,
  };
}

/** A problem with calibration inputs or results, reported as one line (no stack) by the CLI. */
export class CalibrationError extends CascadeError {
  override name = 'CalibrationError';
}

/** Run `fn`, turning plain errors (bad inputs, rules that cannot be met) into CalibrationError. */
export async function reportingCalibrationErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    // Typed errors (ConfigError, ModelLoadError, …) already read well; bugs keep their stack.
    if (err instanceof Error && (err.constructor === Error || err.constructor === RangeError)) throw new CalibrationError(err.message, { cause: err });
    throw err;
  }
}
