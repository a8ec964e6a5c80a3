/**
 * Zod schemas for everything a user configures: model specs, preprocessing, the cascade
 * and its infrastructure. One source of truth for types and validation.
 */
import { z } from 'zod';

const rgb = z.tuple([z.number(), z.number(), z.number()]);

/** Image preprocessing for one model: decode → resize shorter side → centre crop → normalise. */
export const PreprocessSpec = z
  .object({
    /** Shorter side after resize, in pixels. Defaults to round(crop * 256 / 224). */
    resize: z.number().int().positive().optional(),
    /** Centre-crop size [height, width]; a number means square. Defaults to the model input size. */
    crop: z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]).optional(),
    /** Channel order of the tensor. */
    colorOrder: z.enum(['RGB', 'BGR']).default('RGB'),
    /** Pixel values (0..255) are multiplied by this before mean/std. */
    scale: z
      .number()
      .positive()
      .default(1 / 255),
    /** Per-channel mean subtracted after scaling, in the order of `colorOrder`. */
    mean: rgb.default([0.485, 0.456, 0.406]),
    /** Per-channel std divided after mean subtraction, in the order of `colorOrder`. */
    std: rgb.default([0.229, 0.224, 0.225]),
    /** sharp resize kernel. */
    kernel: z.enum(['nearest', 'linear', 'cubic', 'mitchell', 'lanczos2', 'lanczos3']).default('linear'),
  })
  .strict();
export type PreprocessSpec = z.infer<typeof PreprocessSpec>;

/** Preset names accepted in place of a full preprocessing spec. */
export const PreprocessPresets = {
  /** torchvision ImageNet: RGB, /255, ImageNet mean/std. */
  torch: {},
  /** Caffe ImageNet: BGR, 0..255, per-channel mean, no std. */
  caffe: { colorOrder: 'BGR', scale: 1, mean: [103.939, 116.779, 123.68], std: [1, 1, 1] },
} as const satisfies Record<string, Partial<z.input<typeof PreprocessSpec>>>;

/** A preset name, or a spec optionally starting from a preset (`{ preset: caffe, kernel: cubic }`). */
export const PreprocessInput = z
  .union([
    z.enum(['torch', 'caffe']),
    // Overrides carry no defaults of their own, so keys left out keep the preset's values.
    z
      .object({
        preset: z.enum(['torch', 'caffe']).optional(),
        resize: z.unknown().optional(),
        crop: z.unknown().optional(),
        colorOrder: z.unknown().optional(),
        scale: z.unknown().optional(),
        mean: z.unknown().optional(),
        std: z.unknown().optional(),
        kernel: z.unknown().optional(),
      })
      .strict(),
  ])
  .transform((value, ctx): PreprocessSpec => {
    const { preset = 'torch', ...overrides } = typeof value === 'string' ? { preset: value } : value;
    const present = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
    const merged = PreprocessSpec.safeParse({ ...PreprocessPresets[preset], ...present });
    if (!merged.success) {
      for (const issue of merged.error.issues) ctx.addIssue({ ...issue, code: 'custom' } as never);
      return z.NEVER;
    }
    return merged.data;
  });

/** One model of the cascade. */
export const ModelSpec = z
  .object({
    /** Short name used in logs and manifests; defaults to the file name. */
    name: z.string().min(1).optional(),
    /** Path to the .onnx file (relative paths resolve against the spec file, or the cwd). */
    path: z.string().min(1),
    /** Preprocessing: a preset name, or a spec (optionally `{ preset, ...overrides }`). */
    preprocess: PreprocessInput.prefault('torch'),
    /** Label file: one name per line (synsets.txt style) or imagenet_class_index.json. */
    labels: z.string().optional(),
    /** What the model outputs; `auto` detects rows that already sum to 1. */
    output: z.enum(['auto', 'logits', 'probabilities']).default('auto'),
    /** Giga multiply-accumulates per image; counted from the graph when absent. */
    gmacs: z.number().positive().optional(),
    /**
     * onnxruntime graph optimisation level. 'all' fuses QDQ pairs into int8 kernels, which on
     * x86 CPUs without VNNI saturate and cost accuracy (see docs/models.md); 'basic' keeps them float.
     */
    graphOptimization: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
    /** Largest batch sent to a model with a dynamic batch dimension. */
    maxBatch: z.number().int().positive().default(32),
  })
  .strict();
export type ModelSpec = z.infer<typeof ModelSpec>;
export type ModelSpecInput = z.input<typeof ModelSpec>;

/**
 * How routing measures confidence from a probability row (pipeline/routing.ts). pnorm: p-norm-
 * normalised max-logit (Cattelan & Silva 2023); rank: the mean of an image's margin rank and pnorm
 * rank among a calibration sample (needs a RankReference). Both added by issue 18.
 */
export const ConfidenceMetric = z.enum(['maxprob', 'margin', 'entropy', 'pnorm', 'rank']);
export type ConfidenceMetric = z.infer<typeof ConfidenceMetric>;

/** The metrics that need no calibration sample: what self-calibrating runs and chains route by. */
export const SAMPLE_FREE_METRICS = ['maxprob', 'margin', 'entropy', 'pnorm'] as const;

/** Most order statistics a RankReference keeps per signal (see pipeline/routing.ts rankReference). */
export const RANK_REFERENCE_SIZE = 1025;

const OrderStatistics = z
  .array(z.number().finite())
  .min(1, 'needs at least one value')
  .max(RANK_REFERENCE_SIZE, `holds at most ${RANK_REFERENCE_SIZE} order statistics`)
  .refine((v) => v.every((x, i) => i === 0 || v[i - 1]! <= x), 'must be sorted ascending');

/**
 * What the `rank` metric ranks an image against: ascending order statistics of the calibration
 * sample's margin and pnorm confidences (pipeline/routing.ts). Written by `cascade calibrate`.
 */
export const RankReference = z.object({ margin: OrderStatistics, pnorm: OrderStatistics }).strict();
export type RankReference = z.infer<typeof RankReference>;

/** Why metric rank comes with a reference; shared by configs and run specs. */
export const RANK_NEEDS_REFERENCE =
  "metric rank comes from `cascade calibrate` (calib.json carries the calibration sample's margin and pnorm distributions); pass --calibration calib.json";

/** Why rank routes two stages only: its reference is the first stage's calibration sample. */
export const RANK_TWO_STAGES =
  'metric rank routes a little/big pair (its reference is the little model’s calibration sample); a chain takes maxprob, margin, entropy or pnorm';

/**
 * Which int8 kernels one onnxruntime session uses on the CPU provider. 'exact': U8U8 kernels
 * (session.x64quantprecision), so int8 models give the same answers on every x86 CPU; 'native':
 * ORT's default u8s8 kernels, fastest, which saturate on x86 CPUs without VNNI (AVX2-only).
 */
export const SessionNumerics = z.enum(['exact', 'native']);
export type SessionNumerics = z.infer<typeof SessionNumerics>;

/**
 * A run's numerics: a session's, or 'auto': the reference is exact, and each worker labels with
 * native kernels where their probe matches that reference, else with exact ones.
 */
export const Numerics = z.enum(['auto', 'exact', 'native']);
export type Numerics = z.infer<typeof Numerics>;

/** The numerics a run's reference outputs (planning, calibration) are computed with: exact unless the run is native. */
export function referenceNumerics(numerics: Numerics): SessionNumerics {
  return numerics === 'native' ? 'native' : 'exact';
}

/** Execution providers, tried in order. */
export const ExecutionProvider = z.enum(['cpu', 'cuda', 'webgpu', 'tensorrt', 'dml', 'coreml']);
export type ExecutionProvider = z.infer<typeof ExecutionProvider>;

/**
 * What a worker's machine time is paid by: CPU workers by the core-second, GPU workers by the
 * accelerator-second. A stage's class is its model's execution provider (cpu → cpu, any other → gpu).
 */
export const WorkerClass = z.enum(['cpu', 'gpu']);
export type WorkerClass = z.infer<typeof WorkerClass>;

/** Where a run's images go: through the cascade, or straight to its last stage. */
export const Route = z.enum(['cascade', 'big-only']);
export type Route = z.infer<typeof Route>;

/** ISO 4217 codes a price may be given in. */
export const Currency = z.enum(['USD', 'EUR', 'GBP', 'JPY', 'CNY', 'INR', 'CAD', 'AUD', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'BRL', 'KRW', 'SGD']);
export type Currency = z.infer<typeof Currency>;

/**
 * Prices of machine time, per worker class. Defaults are on-demand cloud list prices of late 2026
 * (docs/operations.md, "Cost"): a general-purpose x86 core-hour and one data-centre GPU-hour.
 */
export const Prices = z
  .object({
    /** Price of one CPU core for one hour. */
    cpu: z.number().finite().nonnegative().default(0.045),
    /** Price of one GPU for one hour. */
    gpu: z.number().finite().nonnegative().default(2.5),
    currency: Currency.default('USD'),
  })
  .strict();
export type Prices = z.infer<typeof Prices>;
export const DEFAULT_PRICES: Prices = Prices.parse({});

/** The worker class of a stage whose model opened on `provider`. */
export function workerClassOf(provider: string): WorkerClass {
  return provider === 'cpu' ? 'cpu' : 'gpu';
}

/**
 * How the merge writes a run's manifest: Parquet shards (`manifest/part-NNNNN.parquet`, about
 * `shardRows` rows each) unless `parquet: false`, and manifest.jsonl as `jsonl` says. `auto`
 * writes it up to `jsonlMaxImages` images (or always, without shards): above that one JSON file
 * is too large to be useful (about 30 GB at 100M rows).
 */
export const OutputSettings = z
  .object({
    jsonl: z.enum(['auto', 'always', 'never']).default('auto'),
    /** Under `jsonl: auto`, the largest run (listed images) that still gets manifest.jsonl. */
    jsonlMaxImages: z.number().int().min(0).default(10_000_000),
    parquet: z.boolean().default(true),
    /** Rows per Parquet shard: a shard closes at the batch that reaches it, so it holds whole batches. */
    shardRows: z.number().int().min(1).default(100_000),
    /** Shards encoded and written at once, each on its own worker thread while the merge's machine has cores to spare (1: on the merge's thread). */
    shardConcurrency: z.number().int().min(1).max(64).default(4),
  })
  .strict()
  .refine((o) => o.parquet || o.jsonl !== 'never', { message: 'jsonl: never with parquet: false would write no manifest at all' });
export type OutputSettings = z.infer<typeof OutputSettings>;
export const DEFAULT_OUTPUT: OutputSettings = OutputSettings.parse({});

export const Limits = z
  .object({
    /** Largest accepted image file, bytes. */
    maxBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    /** Largest accepted decoded image, width × height. */
    maxPixels: z.number().int().positive().default(100_000_000),
  })
  .strict();

/**
 * A worker holds a lock on each job it runs and renews it while alive; a job whose lock lapsed
 * (worker killed) is "stalled" and goes back to the queue at the next stalled check. Lower
 * values recover faster but a worker whose event loop stalls longer than lockDurationMs loses
 * its jobs to others (harmless, parts are idempotent, but wasted work).
 */
export const JobLocks = z
  .object({
    lockDurationMs: z.number().int().min(500).default(30_000),
    stalledIntervalMs: z.number().int().min(500).default(30_000),
    /** Times a job may stall before BullMQ fails it for good (it likely crashes its worker). */
    maxStalledCount: z.number().int().min(1).default(2),
  })
  .strict();
export type JobLocks = z.infer<typeof JobLocks>;

export const S3Settings = z
  .object({
    endpoint: z.string().url().optional(),
    region: z.string().default('us-east-1'),
    forcePathStyle: z.boolean().default(false),
  })
  .strict();

/**
 * Azure Blob Storage for az://container/prefix locations. Without `account`, the standard
 * AZURE_STORAGE_CONNECTION_STRING is used, else AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or
 * AZURE_STORAGE_SAS_TOKEN (pipeline/storage/azure-store.ts). A key or SAS token here is a secret:
 * prefer the environment, or `${VAR}` in a config file that is not shared.
 */
export const AzureSettings = z
  .object({
    /** Storage account name (3-24 lower-case letters and digits). */
    account: z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'an Azure storage account name is 3-24 lower-case letters and digits')
      .optional(),
    /** Shared account key (base64), as in the connection string's AccountKey. */
    accountKey: z.string().min(1).optional(),
    /** A SAS token (the query string, with or without its leading '?'). */
    sasToken: z.string().min(1).optional(),
    /** Blob service URL, for Azurite or sovereign clouds; default https://<account>.blob.core.windows.net. */
    endpoint: z.string().url().optional(),
  })
  .strict()
  .refine((a) => a.accountKey === undefined || a.sasToken === undefined, { message: 'set accountKey or sasToken, not both' })
  .refine((a) => a.account !== undefined || (a.accountKey === undefined && a.sasToken === undefined && a.endpoint === undefined), {
    message: 'accountKey, sasToken and endpoint need an account',
  });
export type AzureSettings = z.infer<typeof AzureSettings>;

/**
 * Where workers may read images from. Image refs are data from whoever submitted a run, so a
 * local path is read only when its real path (symlinks and `..` resolved) lies below one of
 * `localRoots` (pipeline/storage/local-roots.ts); anything else is a `forbidden` error row.
 * Relative roots resolve against the config file's folder.
 */
/**
 * Which columns of a Parquet source hold what (img2dataset writes `jpg` bytes and `url`, `key`):
 * `image` (image bytes) or `url` (a ref per row, as in a key list), and `key` (the sample key).
 * Absent: the first of jpg/jpeg/png/webp/image present, else `url`; `key` if present, else the row number.
 */
export const InputColumns = z
  .object({ image: z.string().min(1).optional(), url: z.string().min(1).optional(), key: z.string().min(1).optional() })
  .strict()
  .refine((c) => !(c.image && c.url), { message: 'name an image column or a URL column, not both' });
export type InputColumns = z.infer<typeof InputColumns>;

export const SourceSettings = z
  .object({
    /** Parquet sources: the columns to read (see InputColumns). */
    columns: InputColumns.optional(),
    /**
     * Folders local images may be read from. Absent in a run config: `cascade run` uses its
     * source's folder (defaultLocalRoots in producers/list-source.ts). A worker config
     * (`cascade worker`) defaults to none: the worker reads nothing local.
     */
    localRoots: z.array(z.string().min(1)).optional(),
    /** Remote prefixes: key ranges listed at once (1 lists the prefix in one sequence); default 8. */
    listConcurrency: z.number().int().min(1).max(256).optional(),
    /** Remote prefixes: how many key ranges to cut the prefix into at most (found with a delimiter listing); default 1000. */
    listSplits: z.number().int().min(1).max(4096).optional(),
    /** Remote prefixes: pages of keys each range reads ahead of the batches at most; default 4. */
    listPagesAhead: z.number().int().min(1).max(1000).optional(),
  })
  .strict();
export type SourceSettings = z.infer<typeof SourceSettings>;

/** How a remote prefix is listed (pipeline/storage/split-listing.ts): stored with a run's listing plan, so every process lists it alike. */
export const ListingSplit = z
  .object({
    concurrency: z.number().int().min(1).max(256),
    splits: z.number().int().min(1).max(4096),
    pagesAhead: z.number().int().min(1).max(1000),
  })
  .strict();
export type ListingSplit = z.infer<typeof ListingSplit>;

/** The listing of a config that says nothing about it. */
export const DEFAULT_LISTING_SPLIT: ListingSplit = { concurrency: 8, splits: 1000, pagesAhead: 4 };

/** The listing `sources` asks for, its defaults filled in. */
export function listingSplitOf(sources: Pick<SourceSettings, 'listConcurrency' | 'listSplits' | 'listPagesAhead'> = {}): ListingSplit {
  return {
    concurrency: sources.listConcurrency ?? DEFAULT_LISTING_SPLIT.concurrency,
    splits: sources.listSplits ?? DEFAULT_LISTING_SPLIT.splits,
    pagesAhead: sources.listPagesAhead ?? DEFAULT_LISTING_SPLIT.pagesAhead,
  };
}

/** Worker roles that are not stages; stage names may not take them. */
export const SERVICE_ROLES = ['merge', 'scheduler'] as const;

/** Whether a worker role is a service role (merge, scheduler) rather than a stage name. */
export function isServiceRole(role: string): boolean {
  return (SERVICE_ROLES as readonly string[]).includes(role);
}

/** Stage names become queue names and Redis keys: keep them to a safe alphabet. */
export const StageName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,32}$/, 'stage names use letters, digits, _ and - (at most 32)')
  // Stage names double as `cascade worker` roles, so they must not shadow the other roles.
  .refine((n) => !isServiceRole(n), `the stage names ${SERVICE_ROLES.map((r) => `"${r}"`).join(' and ')} are reserved for those worker roles`);

/** One stage of an N-stage cascade (`stages:`); the last stage has no threshold. */
export const StageConfig = z
  .object({
    /** Queue and role name; defaults to little (first), big (last), stage<i> (between). */
    name: StageName.optional(),
    /** A model spec (file references are resolved by the config loader). */
    model: ModelSpec,
    /** Accept this stage's answer at confidence ≥ threshold; must be absent or null on the last stage. */
    threshold: z.number().min(0).max(1).nullable().optional(),
  })
  .strict();
export type StageConfig = z.infer<typeof StageConfig>;

/** Ordered stages, tiny → big, with default names and the threshold rules checked. */
export const StageList = z
  .array(StageConfig)
  .min(2, 'a cascade needs at least 2 stages')
  .superRefine((stages, ctx) => {
    stages.forEach((s, i) => {
      const last = i === stages.length - 1;
      if (last && s.threshold !== undefined && s.threshold !== null) {
        ctx.addIssue({ code: 'custom', path: [i, 'threshold'], message: `the last stage accepts every image, so it takes no threshold (got ${s.threshold})` });
      }
      if (!last && (s.threshold === undefined || s.threshold === null)) {
        ctx.addIssue({ code: 'custom', path: [i, 'threshold'], message: 'every stage but the last needs a threshold in [0, 1]' });
      }
    });
  })
  .transform((stages) =>
    stages.map((s, i) => ({ ...s, name: s.name ?? defaultStageName(i, stages.length), threshold: i === stages.length - 1 ? null : s.threshold! })),
  )
  .superRefine((stages, ctx) => {
    const seen = new Set<string>();
    stages.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `stage name "${s.name}" is used twice` });
      seen.add(s.name);
    });
  });

/** Default name of stage `i` of `n`: little, stage1, …, big. */
export function defaultStageName(i: number, n: number): string {
  return i === 0 ? 'little' : i === n - 1 ? 'big' : `stage${i}`;
}

/**
 * Audit sampling: a deterministic fraction of the images the first stage accepted also goes to
 * the last stage, to measure live little/big agreement; audits never change the manifest.
 */
export const AuditConfig = z
  .object({
    /** Fraction of accepted images audited, 0..1 (e.g. 0.02). */
    fraction: z.number().min(0).max(1),
    /** Mixed into the sampling hash; change it to audit a different sample of the same run. */
    seed: z.string().default(''),
    /**
     * The agreement the calibration promised on accepted images (calib.json `expected.agreement`);
     * the summary flags drift when the audit's Wilson upper bound falls below it.
     */
    expectAgreement: z.number().min(0).max(1).optional(),
  })
  .strict();
export type AuditConfig = z.infer<typeof AuditConfig>;

/**
 * How a stage's queue is laid out in Redis. `shards` > 1 splits it into that many BullMQ queues,
 * each with its own hash tag, so Redis Cluster spreads a stage's traffic over its primaries
 * (queue/queue-shards.ts). Every process of a fleet must use the same value.
 */
export const QueueSettings = z
  .object({
    /** BullMQ queues per stage (1: one queue, named as always). */
    shards: z.number().int().min(1).max(256).default(1),
  })
  .strict();
export type QueueSettings = z.infer<typeof QueueSettings>;

/** The fields of a cascade run configuration, before the checks across fields (see CascadeConfig). */
export const CascadeConfigFields = z
  .object({
    little: ModelSpec,
    big: ModelSpec,
    /** Confidence at or above which the little model's answer is accepted. */
    threshold: z.number().min(0).max(1).default(0.5),
    /**
     * N-stage form (tiny → small → big); replaces little/big/threshold, which the loader then
     * fills from the first and last stage. Absent: the two-stage little → big cascade.
     */
    stages: StageList.optional(),
    /** Audit sampling of accepted images; absent = no audits. */
    audit: AuditConfig.optional(),
    /**
     * Where images go: through the cascade, or straight to the last stage without running the
     * others (`big-only`, what a calibration's cost verdict sets when the cascade does not pay).
     */
    route: Route.default('cascade'),
    metric: ConfidenceMetric.default('maxprob'),
    /** The calibration sample's margin and pnorm distributions; metric rank only (from calib.json). */
    rankReference: RankReference.optional(),
    /** Image refs per job. */
    batchSize: z.number().int().min(1).max(1024).default(32),
    executionProviders: z.array(ExecutionProvider).min(1).default(['cpu']),
    /**
     * int8 numerics on the CPU provider. onnxruntime's default u8s8 int8 kernels saturate
     * intermediate sums on x86 CPUs without VNNI, so the int8 models (ShuffleNet QDQ, MobileNetV2
     * int8, the ensemble) gave different top-1 answers on different CPUs, 6–9 pp lower on an
     * AVX2-only one. 'exact' makes ORT use U8U8 kernels, giving the VNNI answers on every x86 CPU
     * (and costing speed on VNNI CPUs, up to 2x for MobileNetV2); 'native' keeps ORT's defaults;
     * 'auto' (default) labels with native kernels on a worker whose native probe matches the run's
     * exact reference, and with exact ones elsewhere (docs/models.md, "Numerics").
     */
    numerics: Numerics.default('auto'),
    /**
     * Largest difference in probability a worker's conformance probe may show against the run's
     * reference before it refuses the run's model (see pipeline/models/probe.ts). Exact numerics
     * differ between CPUs by float rounding only; int8 saturation shifts probabilities by far more.
     */
    probeTolerance: z.number().min(0).max(1).default(0.002),
    /** Models a worker keeps open at once (runs may name different ones); the least recently used idle one is closed. */
    maxModels: z.number().int().min(1).default(4),
    /** Where workers keep models they read from s3:// (onnxruntime opens files). Default: the OS temp dir. */
    modelDir: z.string().optional(),
    /** Inference threads per model (each holds one ORT session). */
    inferenceThreads: z.number().int().min(1).default(1),
    /** ORT intra-op threads per session; 0: the process' cores shared among the stages it serves. */
    intraOpThreads: z.number().int().min(0).default(0),
    /** Jobs a worker processes at once. */
    concurrency: z.number().int().min(1).default(2),
    /** Images fetched + decoded at once inside one job. */
    fetchConcurrency: z.number().int().min(1).default(8),
    /**
     * Models with a dynamic batch dimension: how long a partial batch waits for other jobs' images,
     * ms (0: never). Absent: 20 on GPU execution providers, off on CPU, where stacking jobs into
     * bigger batches measured 0.85–0.90x of one call per job (docs/performance.md).
     */
    accumulateMs: z.number().int().min(0).optional(),
    /** Jobs a worker of such a model runs at once, so that small forwarded jobs fill its batches together. */
    accumulateJobs: z.number().int().min(1).default(8),
    /** MiB of preprocessed tensors a process keeps for its next stage, saving a second fetch and decode (0: off). */
    tensorCacheMb: z.number().int().min(0).default(128),
    /** BullMQ job locks: how soon the jobs of a crashed worker are re-run elsewhere. */
    jobLocks: JobLocks.default({ lockDurationMs: 30_000, stalledIntervalMs: 30_000, maxStalledCount: 2 }),
    limits: Limits.default({ maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 }),
    s3: S3Settings.default({ region: 'us-east-1', forcePathStyle: false }),
    /** Azure Blob Storage account for az:// locations (absent: from the environment). */
    azure: AzureSettings.optional(),
    /** Local image roots (see SourceSettings). */
    sources: SourceSettings.default({}),
    /** Prices of machine time per worker class: the summary and calibration report cost in money next to seconds. */
    prices: Prices.default(DEFAULT_PRICES),
    /** How the merge writes the manifest: Parquet shards, and manifest.jsonl unless the run is too large (docs/results.md). */
    output: OutputSettings.default(DEFAULT_OUTPUT),
    /** Redis URL; when absent `cascade run` starts a private redis-server. */
    redisUrl: z.string().optional(),
    /** BullMQ key prefix (use a `{hash-tag}` on Redis Cluster). */
    prefix: z.string().min(1).default('cascade'),
    /** Queue layout: `shards` BullMQ queues per stage (for Redis Cluster). */
    queues: QueueSettings.default({ shards: 1 }),
    /**
     * Batches a run keeps queued or running at most while its source is still being listed: the
     * listing's cursor is kept in Redis and more batches are listed as these finish, so Redis
     * holds the window, not the collection (docs/architecture.md, "Bounded in-flight work").
     */
    window: z
      .object({
        batches: z.number().int().min(1),
        /**
         * Bytes of queued first-stage job payload (the job JSON Redis holds) the run keeps in flight
         * at most, besides the batches: whichever bound is hit first stops the listing. Absent: none.
         */
        bytes: z.number().int().min(1).optional(),
      })
      .strict()
      .default({ batches: 1000 }),
    /** File extensions listed by producers (lower case, with dot). */
    extensions: z.array(z.string().regex(/^\.[a-z0-9]+$/)).default(['.jpg', '.jpeg', '.png', '.webp', '.avif', '.gif', '.tif', '.tiff', '.bmp']),
  })
  .strict();

/** The whole cascade run configuration (file + env + CLI flags merged). */
export const CascadeConfig = CascadeConfigFields.superRefine((c, ctx) => checkRankConfig(c, ctx, false));

/** The configuration of a self-calibrating run: metric rank needs no reference there (its warm-up builds one). */
export const SelfCalibratingConfig = CascadeConfigFields.superRefine((c, ctx) => checkRankConfig(c, ctx, true));

function checkRankConfig(c: z.infer<typeof CascadeConfigFields>, ctx: z.RefinementCtx, selfCalibrating: boolean): void {
  if (c.metric !== 'rank') return;
  if (c.rankReference === undefined && !selfCalibrating) ctx.addIssue({ code: 'custom', path: ['rankReference'], message: RANK_NEEDS_REFERENCE });
  if (c.stages && c.stages.length > 2) ctx.addIssue({ code: 'custom', path: ['metric'], message: RANK_TWO_STAGES });
}
export type CascadeConfig = z.infer<typeof CascadeConfig>;
export type CascadeConfigInput = z.input<typeof CascadeConfig>;
