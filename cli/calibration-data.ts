/**
 * The I/O half of calibration for the CLI: list the images (any input format of the table in
 * producers/inputs/input-formats.ts: loose images, WebDataset or Parquet shards), run each model
 * once over them (or take its rows from the probability cache), reading each the way a run's
 * stage does (pipeline/inputs/read-sample.ts), match ground-truth labels (a CSV, or the labels the
 * shards carry), and build the ground truth that pipeline/calibration/tables.ts pairs into
 * calibration/test tables.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CascadeError } from '../config/errors.js';
import { type CascadeConfig, type ConfidenceMetric, type ModelSpec, referenceNumerics } from '../config/schema.js';
import { parseGroundTruth } from '../pipeline/calibration/ground-truth.js';
import { defaultCacheDir, modelFingerprint, ProbabilityCache, type ScoredImages } from '../pipeline/calibration/prob-cache.js';
import type { CalibrateOptions as CalibrateRuleOptions, CalibrationRule } from '../pipeline/calibration/calibrate.js';
import type { RiskMethod } from '../pipeline/calibration/risk-control.js';
import { withColumnFlags } from './cascade-flags.js';
import { createLogger, registerBar } from './logger.js';
import { TerminalBar } from './progress-bar.js';
import { scoreImages } from '../pipeline/calibration/score-images.js';
import type { ScoredModel } from '../pipeline/calibration/tables.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { isRemoteUrl } from '../pipeline/storage/location.js';
import { ParquetFiles, readInput } from '../pipeline/inputs/read-sample.js';
import { labelClass } from '../pipeline/inputs/sample-label.js';
import type { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import { Stores } from '../pipeline/storage/stores.js';
import { readReviews } from '../pipeline/reviews/reviews-file.js';
import { relativeName } from '../pipeline/calibration/tables.js';
import { ConfigError } from '../config/load-config.js';
import { ModelCache } from '../pipeline/models/model-cache.js';
import { type PlannedModel, planModel } from '../pipeline/models/plan-model.js';
import { defaultProbeCacheDir, ProbeCache } from '../pipeline/models/probe-cache.js';
import type { LoadedModel } from '../pipeline/models/loaded-model.js';
import { inputFormatOf, inputLocalRoots, listInputs } from '../producers/inputs/input-formats.js';
import { parquet } from '../producers/inputs/parquet.js';
import { asListed, type ListedInput } from '../producers/inputs/listed-input.js';

/** The flags shared by calibrate, calibrate --stages and search-saver. */
export interface CalibrationCliOptions {
  images: string;
  labels?: string;
  /** Parquet source: the column of class indices, the ground truth instead of --labels. */
  labelColumn?: string;
  /** Parquet source: its image, URL and key columns (config `sources.columns`). */
  imageColumn?: string;
  urlColumn?: string;
  keyColumn?: string;
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
  /** Where each listed sharded sample's image is in its shard, by ref (filled by the listing). */
  samples: Map<string, SampleLocator>;
  /** The Parquet files read from, footers kept (as a run's process keeps them). */
  parquet: ParquetFiles;
  /** A warning line the user should see (stderr). */
  warn: (msg: string) => void;
}

/** A context for the command's flags: logger, cache, local roots, Parquet columns, and the stores (clients built on first use). */
export function dataContext(
  config: CascadeConfig,
  o: Pick<CalibrationCliOptions, 'cache' | 'progress' | 'imageColumn' | 'urlColumn' | 'keyColumn'> & { images?: string },
): DataContext {
  withColumnFlags(config, o);
  const logger = createLogger();
  const cacheDir = o.cache === false ? null : (o.cache ?? defaultCacheDir());
  const localRoots = config.sources.localRoots ?? (o.images === undefined ? undefined : inputLocalRoots(o.images));
  return {
    config,
    stores: new Stores(config),
    cache: cacheDir ? new ProbabilityCache(cacheDir) : null,
    log: (msg) => logger.info(msg),
    progress: o.progress !== false,
    localRoots,
    samples: new Map(),
    parquet: new ParquetFiles(),
    warn: (msg) => process.stderr.write(`cascade: warning: ${msg}\n`),
  };
}

/** The source's inputs in listing order (local refs absolute), each sharded sample's locator noted in `ctx.samples`. */
async function listSourceInputs(source: string, ctx: DataContext, labels?: { column?: string }): Promise<ListedInput[]> {
  const src = isRemoteUrl(source) ? source : resolve(source);
  const inputs: ListedInput[] = [];
  const opts = { extensions: ctx.config.extensions, stores: ctx.stores, columns: ctx.config.sources.columns, labels };
  for await (const entry of listInputs(src, opts)) {
    const input = asListed(entry);
    if (input.at) ctx.samples.set(input.ref, input.at);
    inputs.push(input);
  }
  if (inputs.length === 0) throw new Error(`no images found in ${source} (extensions ${ctx.config.extensions.join(' ')})`);
  return inputs;
}

/** The source's image refs (loose refs, or `<shard>#<sampleKey>`), in listing order (local ones absolute). */
export async function listImages(source: string, ctx: DataContext): Promise<string[]> {
  return (await listSourceInputs(source, ctx)).map((i) => i.ref);
}

/** How a command reads one listed image: as a run's stage reads it (a sharded sample at its place in its shard). */
export function imageReader(ctx: DataContext): (ref: string) => Promise<Buffer> {
  const limits = { maxBytes: ctx.config.limits.maxBytes, localRoots: ctx.localRoots };
  return (ref) => readInput(ref, ctx.samples.get(ref), { stores: ctx.stores, limits, parquet: ctx.parquet });
}

/** The images of a calibration and their ground truth: a labels CSV, the shards' own labels, or none. */
export interface LabeledImages {
  /** In listing order; samples whose shard gives no valid label are left out when the shards are the ground truth. */
  refs: string[];
  /** Class by name relative to the source (tables.ts relativeName); null: no ground truth. */
  truth: Map<string, number> | null;
  /** Samples left out for want of a valid label in their shard. */
  unlabeled: number;
}

/**
 * List `o.images` with its ground truth: `--labels` (a CSV, keyed by path relative to the source,
 * `<shard>#<sampleKey>` for shards), else the labels the shards carry (WebDataset `.cls`/`.json`,
 * Parquet `--label-column`), else none. A sample without a valid shard label is left out and
 * counted in a warning; when the shards were asked for labels and none is valid, one line refuses.
 */
export async function labeledImages(o: Pick<CalibrationCliOptions, 'images' | 'labels' | 'labelColumn'>, ctx: DataContext): Promise<LabeledImages> {
  if (o.labels !== undefined && o.labelColumn !== undefined) throw new ConfigError('give the ground truth with --labels or --label-column, not both');
  if (o.labelColumn !== undefined && inputFormatOf(o.images) !== parquet)
    throw new ConfigError(`--label-column names a column of a Parquet source; ${o.images} is not one (WebDataset shards carry their labels in .cls members)`);
  if (o.labels !== undefined) return { refs: await listImages(o.images, ctx), truth: await readGroundTruth(o.labels, ctx), unlabeled: 0 };
  const inputs = await listSourceInputs(o.images, ctx, { column: o.labelColumn });
  return shardTruth(inputs, o.images, o.labelColumn !== undefined, ctx);
}

/** The shards' labels as ground truth (see labeledImages); `asked`: the user named a label column. */
function shardTruth(inputs: readonly ListedInput[], source: string, asked: boolean, ctx: DataContext): LabeledImages {
  const refs = inputs.map((i) => i.ref);
  // A sample the listing found unreadable is kept: it is reported as not scored, not as unlabeled.
  const carrying = inputs.filter((i) => i.label !== undefined && !(i.at && 'unreadable' in i.at));
  const bad = carrying.filter((i) => labelClass(i.label!) === null);
  const why = (i: ListedInput) => Object.values(i.label!)[0] as string;
  if (carrying.length === 0) return { refs, truth: null, unlabeled: 0 };
  if (bad.length === carrying.length) {
    if (!asked && bad.every((i) => 'missing' in i.label!)) {
      ctx.log(`no sample of ${source} carries a label (.cls or .json): calibrating without labels`);
      return { refs, truth: null, unlabeled: 0 };
    }
    throw new ConfigError(`none of the ${carrying.length} samples of ${source} has a valid label, e.g. ${why(bad[0]!)}`);
  }
  const truth = new Map<string, number>();
  for (const i of carrying) {
    const c = labelClass(i.label!);
    if (c !== null) truth.set(relativeName(i.ref, source), c);
  }
  if (bad.length > 0) {
    const missing = bad.filter((i) => 'missing' in i.label!).length;
    ctx.warn(
      `${bad.length} of ${carrying.length} samples left out for want of a label: ${missing} without one, ${bad.length - missing} with an invalid one (e.g. ${why(bad[0]!)})`,
    );
  }
  const left = new Set(bad.map((i) => i.ref));
  return { refs: refs.filter((r) => !left.has(r)), truth, unlabeled: bad.length };
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
          fetch: imageReader(ctx),
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
