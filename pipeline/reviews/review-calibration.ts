/**
 * A schedule's calibration from human reviews (`schedule add --calibration-from <location>`,
 * docs/reviews.md): which reviewed run a firing learns from, the certification from that run's
 * random-slice reviews with the rule and guarantee of `calibrate --reviews`, and the record every
 * firing keeps of the reviews it used, or of why it fell back to the schedule's own calibration.
 */
import { createHash } from 'node:crypto';
import type { ConfidenceMetric, RankReference } from '../../config/schema.js';
import { calibrate } from '../calibration/calibrate.js';
import { buildTables, relativeName, type ScoredModel } from '../calibration/tables.js';
import { RunSummary } from '../results/manifest.js';
import { REVIEWS_KEY, SUMMARY_KEY } from '../results/output-layout.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { readReviews } from './reviews-file.js';
import type { CalibrationFrom, ReviewCalibrationRecord } from './review-calibration-record.js';

/** The first-stage routing a certified calibration gives a firing. */
export interface ReviewRouting {
  metric: ConfidenceMetric;
  threshold: number;
  /** Metric rank only: the reviewed images' little rows, as `calibrate` ranks against. */
  rankReference?: RankReference;
}

/** A reviewed run found for a firing: its location, store, reviews.jsonl bytes and summary. */
export interface ReviewedRun {
  location: string;
  store: ObjectStore;
  bytes: Buffer;
  summary: RunSummary;
}

/**
 * The reviewed run a firing calibrates from: `from` itself when it holds a reviews.jsonl (a run's
 * output location), else the first of `candidates` (the merged runs whose output lies under
 * `from`, newest first) that holds one. Runs without a readable summary.json are passed over.
 */
export async function findReviewedRun(from: string, candidates: readonly string[], open: (location: string) => ObjectStore): Promise<ReviewedRun | null> {
  for (const location of [from, ...candidates.filter((c) => c !== from)]) {
    const store = open(location);
    let bytes: Buffer;
    try {
      bytes = await store.get(REVIEWS_KEY);
    } catch (err) {
      if (isObjectNotFound(err)) continue;
      throw err;
    }
    const summary = await readJson(store, SUMMARY_KEY, RunSummary).catch((err: unknown) => {
      if (isObjectNotFound(err)) return null;
      throw err;
    });
    if (summary) return { location, store, bytes, summary };
  }
  return null;
}

/** Whether `location` is `from` or lies under it (both as written: a directory or an s3:// prefix). */
export function isUnder(location: string, from: string): boolean {
  const trim = (s: string) => s.replace(/\/+$/, '');
  return trim(location) === trim(from) || trim(location).startsWith(`${trim(from)}/`);
}

/** The outcome for a firing: its record, and the routing to use when the reviews certified one. */
export interface ReviewCalibration {
  record: ReviewCalibrationRecord;
  routing: ReviewRouting | null;
}

export interface ReviewCalibrationInput {
  from: CalibrationFrom;
  /** Merged runs whose output lies under `from.location`, newest first. */
  candidates: readonly string[];
  open: (location: string) => ObjectStore;
  /** The schedule's first and last stage scored on the reviewed images (their refs, as in the run's manifest). */
  score: (refs: readonly string[]) => Promise<[ScoredModel, ScoredModel]>;
  /** What the firing runs with when the reviews certify nothing, in words (e.g. `maxprob ≥ 0.9, the schedule's calibration`). */
  fallback: string;
  /** Share of the reviewed images the threshold is chosen on (the rest judge it), as `calibrate --calibration-fraction`. */
  calibrationFraction?: number;
}

/**
 * Certify a firing's first-stage threshold from the latest reviewed run's human labels, exactly as
 * `calibrate --reviews <run> --images <its source>` does with the same rule (the random slice
 * only, half to choose, half to judge). No reviewed run, no random-slice review, a malformed
 * reviews file or a sample too small for the target is a refusal: recorded, with the fallback.
 */
export async function calibrateFromReviews(input: ReviewCalibrationInput): Promise<ReviewCalibration> {
  const { from } = input;
  const base = { from: from.location, run: null, runId: null, reviewsSha256: null, reviews: 0, leftOut: 0, latest: null, target: from.target };
  const refuse = (record: Partial<ReviewCalibrationRecord>, refusal: string): ReviewCalibration => ({
    record: { ...base, ...record, certified: false, refusal, fallback: input.fallback },
    routing: null,
  });
  const found = await findReviewedRun(from.location, input.candidates, input.open);
  if (!found) return refuse({}, `no reviewed run at or under ${from.location} (no merged run there has a ${REVIEWS_KEY})`);
  const found_ = {
    run: found.location,
    runId: found.summary.runId,
    reviewsSha256: createHash('sha256').update(found.bytes).digest('hex'),
  };
  let all: Awaited<ReturnType<typeof readReviews>>;
  try {
    all = await readReviews(found.store);
  } catch (err) {
    // A malformed file stays malformed: retrying the firing would not help.
    if ((err as Error).message.startsWith(`${REVIEWS_KEY} line`)) return refuse(found_, (err as Error).message);
    throw err;
  }
  // The picked reviews were chosen because the cascade looked wrong: no fair sample (as calibrate --reviews).
  const used = all.filter((r) => r.reasons.includes('random'));
  const times = used.map((r) => r.reviewedAt).filter((t) => t !== null);
  const sample = {
    ...found_,
    reviews: used.length,
    leftOut: all.length - used.length,
    latest: times.length ? times.reduce((a, b) => (Date.parse(b) > Date.parse(a) ? b : a)) : null,
  };
  if (used.length === 0) return refuse(sample, `none of the ${all.length} reviews of ${found.location} is of a random slice, the only fair calibration sample`);
  const source = found.summary.source;
  const refs = used.map((r) => r.key);
  const truth = new Map(used.map((r) => [relativeName(r.key, source), r.label]));
  const [little, big] = await input.score(refs);
  let skipped = '';
  try {
    const tables = buildTables(refs, source, little, big, truth, input.calibrationFraction ?? 0.5);
    const first = tables.skipped[0];
    // Images this process cannot read (outside its local roots, gone) shrink the sample: the refusal says so.
    if (first) skipped = ` (${tables.skipped.length} of ${refs.length} reviewed images could not be scored here, e.g. ${first.key}: ${first.message})`;
    const t = from.target;
    const outcome = calibrate(
      tables.calibration,
      tables.test,
      { littleGmacs: little.gmacsPerImage, bigGmacs: big.gmacsPerImage },
      t.rule === 'guaranteed-drop'
        ? { rule: t.rule, maxDrop: t.maxDrop, delta: t.delta }
        : { rule: t.rule, targetAgreement: t.targetAgreement, delta: t.delta },
    );
    const c = outcome.chosen;
    return {
      record: { ...base, ...sample, certified: true, metric: c.metric, threshold: c.threshold, ...(c.guarantee ? { promise: c.guarantee.promise } : {}) },
      routing: { metric: c.metric, threshold: c.threshold, ...(c.metric === 'rank' && outcome.rankReference ? { rankReference: outcome.rankReference } : {}) },
    };
  } catch (err) {
    // CalibrationRefused (too few reviews for the target), or a sample the split leaves empty.
    return refuse(sample, `${(err as Error).message}${skipped}`);
  }
}
