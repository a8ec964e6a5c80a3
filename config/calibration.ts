/**
 * calib.json: what `cascade calibrate` decided and promises, and what `cascade run
 * --calibration` and `cascade submit --calibration` take from it (threshold and metric).
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { ConfidenceMetric, RANK_TWO_STAGES, RankReference, WorkerClass } from './schema.js';

const Fraction = z.number().min(0).max(1);

export const Verdict = z.enum(['cascade', 'big-only', 'single-model']);
export type Verdict = z.infer<typeof Verdict>;

/** A model's measured cost per image on the calibrating machine (pipeline/cost/model-timing.ts). */
export const MeasuredModel = z.object({
  name: z.string(),
  workerClass: WorkerClass,
  /** Seconds to fetch, decode and preprocess one image for this model. */
  decodeSeconds: z.number().nonnegative(),
  /** Seconds of inference per image. */
  inferSeconds: z.number().nonnegative(),
  /** Where the figures came from: a timing probe on this machine, or earlier runs of the same model. */
  source: z.enum(['probe', 'runs']),
});
export type MeasuredModel = z.infer<typeof MeasuredModel>;

/** One configuration the verdict weighed. */
export const CostCandidate = z.object({
  config: z.string(),
  kind: Verdict,
  /** Machine seconds per image (each stage decodes its own input, as workers on separate machines do). */
  secondsPerImage: z.number().nonnegative(),
  /** Money per image at the configured prices. */
  pricePerImage: z.number().nonnegative(),
  meetsTarget: z.boolean(),
  why: z.string(),
});
export type CostCandidate = z.infer<typeof CostCandidate>;

/** calib.json `cost` (pipeline/cost/verdict.ts): the verdict, its expected saving against big alone, and every candidate. */
export const CostVerdict = z.object({
  verdict: Verdict,
  reason: z.string(),
  /** 1 − price of the verdict / price of big alone. */
  expectedCostSaving: z.number(),
  currency: z.string(),
  models: z.array(MeasuredModel),
  candidates: z.array(CostCandidate),
});
export type CostVerdict = z.infer<typeof CostVerdict>;

/** Figures of the chosen operating point on one part of the images. */
const OperatingPoint = z.object({
  images: z.number().int().nonnegative(),
  fractionToBig: Fraction,
  gmacsPerImage: z.number().nonnegative(),
  /** 1 − cascade GMACs / big-only GMACs. */
  saved: z.number(),
  /** Little/big top-1 agreement on the images the little model keeps, with its Wilson interval. */
  agreement: Fraction,
  agreementInterval: z.object({ low: Fraction, high: Fraction }),
  /** Null without labels. */
  accuracy: Fraction.nullable(),
  littleAccuracy: Fraction.nullable(),
  bigAccuracy: Fraction.nullable(),
  /** Saving of a perfect router (big sees exactly what little gets wrong and big right); null without labels. */
  oracleSaved: z.number().nullable(),
});

/**
 * The model a calibration measured, by content, and its conformance probe on the calibrating
 * machine (pipeline/models/probe.ts): a run on a machine whose outputs differ is refused.
 */
export const CalibrationPin = z.object({ sha256: z.string(), numerics: z.string(), probe: z.unknown() });
export type CalibrationPin = z.infer<typeof CalibrationPin>;

/** Absent in calib.json files written before pins. */
const ModelRef = z.object({ name: z.string(), path: z.string(), gmacsPerImage: z.number().nonnegative(), pin: CalibrationPin.optional() });

/**
 * What a guaranteed rule promises (pipeline/calibration/calibrate.ts): with probability ≥ 1 − δ,
 * on new images from the same distribution, agreement on kept images ≥ bound (kind agreement)
 * or cascade accuracy ≥ big's − level (kind accuracy-drop). Absent for point-estimate rules.
 */
const Guarantee = z.object({
  method: z.enum(['ltt', 'sgr', 'ltt-batch']),
  delta: z.number().gt(0).lt(1),
  kind: z.enum(['agreement', 'accuracy-drop']),
  level: Fraction,
  bound: Fraction,
  images: z.number().int().nonnegative(),
  promise: z.string(),
});

export const CalibrationFile = z
  .object({
    version: z.literal(1),
    createdAt: z.string(),
    little: ModelRef,
    big: ModelRef,
    /** guaranteed and guaranteed-drop carry `guarantee`; the others are point estimates. */
    rule: z.enum(['guaranteed', 'guaranteed-drop', 'tinysaver', 'no-loss', 'label-free']),
    reason: z.string(),
    metric: ConfidenceMetric,
    /** Metric rank only: the calibration part's margin and pnorm distributions, which the run ranks new images against. */
    rankReference: RankReference.optional(),
    /** Accept little answers with confidence ≥ threshold; above 1 means never (send all to big). */
    threshold: z.number().min(0).max(2),
    settings: z.object({
      maxDrop: Fraction,
      targetAgreement: Fraction,
      metrics: z.array(ConfidenceMetric),
      z: z.number().positive(),
      calibrationFraction: Fraction,
      /** Absent in files written before guaranteed rules. */
      delta: z.number().gt(0).lt(1).optional(),
      method: z.enum(['ltt', 'sgr', 'ltt-batch']).optional(),
    }),
    /** The finite-sample promise of a guaranteed rule; absent for point-estimate rules and older files. */
    guarantee: Guarantee.optional(),
    /** What the calibration part showed (a point estimate; the promise of a guaranteed rule is `guarantee`). */
    expected: OperatingPoint,
    /** The same threshold judged on the held-out test part; null when everything calibrated. */
    test: OperatingPoint.nullable(),
    /** Images that could not be scored (decode errors) and were left out. */
    skippedImages: z.number().int().nonnegative(),
    /** Samples left out because their shard gave no valid label (`.cls`, `.json`, a Parquet label column); absent when none. */
    unlabeledImages: z.number().int().positive().optional(),
    files: z.object({ curveJson: z.string(), curveCsv: z.string(), plot: z.string() }),
    /** The measured-cost verdict: cascade, big-only or single-model, with every candidate's cost (absent in older files). */
    cost: CostVerdict.optional(),
    /** `calibrate --reviews`: the reviewed run whose human labels were the ground truth, how many were used and the latest's time. */
    reviews: z
      .object({ run: z.string(), used: z.number().int().nonnegative(), leftOut: z.number().int().nonnegative(), latest: z.string().nullable() })
      .optional(),
  })
  .refine((f) => f.metric !== 'rank' || f.rankReference !== undefined, {
    path: ['rankReference'],
    message: 'metric rank needs the rankReference it ranks against',
  });
export type CalibrationFile = z.infer<typeof CalibrationFile>;

/** What a chain of thresholds does on one part of the images (see pipeline/calibration/chain.ts). */
const ChainPoint = z.object({
  images: z.number().int().nonnegative(),
  reached: z.array(z.number().int().nonnegative()),
  kept: z.array(z.number().int().nonnegative()),
  gmacsPerImage: z.number().nonnegative(),
  saved: z.number(),
  agreement: Fraction,
  agreementInterval: z.object({ low: Fraction, high: Fraction, estimate: Fraction }),
  accuracy: Fraction.nullable(),
  lastAccuracy: Fraction.nullable(),
});

/**
 * What a chain's guaranteed rule promises: with probability ≥ 1 − δ, agreement with the last
 * stage on new images that an earlier stage keeps ≥ bound; `accepted` of `images` calibration
 * images were accepted early at the certified path level `quantile`.
 */
const ChainGuarantee = Guarantee.extend({
  method: z.literal('ltt'),
  kind: z.literal('agreement'),
  accepted: z.number().int().nonnegative(),
  quantile: Fraction,
});

/** calib.json of an N-stage cascade (`cascade calibrate --stages a b c`): one threshold per stage but the last. */
export const ChainCalibrationFile = z.object({
  version: z.literal(1),
  kind: z.literal('chain'),
  createdAt: z.string(),
  stages: z.array(ModelRef.extend({ threshold: Fraction.nullable() })).min(2),
  /** guaranteed (pipeline/calibration/chain-risk.ts) carries `guarantee`; the others are point estimates. */
  rule: z.enum(['guaranteed', 'tinysaver', 'no-loss', 'label-free']),
  reasons: z.array(z.string()),
  metric: ConfidenceMetric.refine((m): boolean => m !== 'rank', RANK_TWO_STAGES),
  settings: z.object({
    maxDrop: Fraction,
    targetAgreement: Fraction,
    metrics: z.array(ConfidenceMetric),
    calibrationFraction: Fraction,
    /** Guaranteed rule only; absent in older files. */
    delta: z.number().gt(0).lt(1).optional(),
    method: z.literal('ltt').optional(),
  }),
  /** The guaranteed rule's promise, on agreement with the last stage on images an earlier stage keeps; absent for point-estimate rules and older files. */
  guarantee: ChainGuarantee.optional(),
  expected: ChainPoint,
  test: ChainPoint.nullable(),
  skippedImages: z.number().int().nonnegative(),
  /** Samples left out because their shard gave no valid label; absent when none. */
  unlabeledImages: z.number().int().positive().optional(),
  /** The measured-cost verdict against each stage alone and the pairs (absent in older files). */
  cost: CostVerdict.optional(),
});
export type ChainCalibrationFile = z.infer<typeof ChainCalibrationFile>;

/** Either kind of calib.json. */
export const AnyCalibrationFile = z.union([ChainCalibrationFile, CalibrationFile]);
export type AnyCalibrationFile = z.infer<typeof AnyCalibrationFile>;

/** Read and validate a calib.json (two-stage or chain), with errors that name the file and the field. */
export async function readAnyCalibrationFile(path: string): Promise<AnyCalibrationFile> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read calibration ${path}: ${(err as Error).message}`);
  }
  const isChain = typeof raw === 'object' && raw !== null && (raw as { kind?: unknown }).kind === 'chain';
  const parsed = (isChain ? ChainCalibrationFile : CalibrationFile).safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new Error(`calibration ${path} is not a calib.json written by \`cascade calibrate\`:\n${issues}`);
  }
  return parsed.data;
}

/**
 * Check that a calibration applies to the models of a run, compared by file name since the
 * same model may sit at different paths on different machines. Returns a problem, or null.
 */
export function calibrationMismatch(cal: AnyCalibrationFile, stagePaths: readonly string[]): string | null {
  const calPaths = 'kind' in cal ? cal.stages.map((s) => s.path) : [cal.little.path, cal.big.path];
  if (calPaths.length !== stagePaths.length) return `it was made for ${calPaths.length} stages, but this run has ${stagePaths.length}`;
  for (const [i, calPath] of calPaths.entries()) {
    const role = i === 0 ? 'little' : i === calPaths.length - 1 ? 'big' : `stage ${i}`;
    if (basename(calPath) !== basename(stagePaths[i]!))
      return `it was made for ${role} model ${basename(calPath)}, but this run's ${role} model is ${basename(stagePaths[i]!)}`;
  }
  return null;
}
