/**
 * The schemas of a schedule's calibration from reviews (review-calibration.ts): the target a
 * schedule certifies, its `--calibration-from`, and the record each firing keeps (in its run spec
 * and summary.json). Apart from the logic so the summary schema can name the record without a cycle.
 */
import { z } from 'zod';

const Delta = z.number().gt(0).lt(1);

/** What a firing certifies from the reviews: an accuracy drop against big (human labels), or agreement with big. */
export const ReviewTarget = z.discriminatedUnion('rule', [
  z.object({ rule: z.literal('guaranteed-drop'), maxDrop: z.number().min(0).max(1), delta: Delta }).strict(),
  z.object({ rule: z.literal('guaranteed'), targetAgreement: z.number().gt(0).lt(1), delta: Delta }).strict(),
]);
export type ReviewTarget = z.infer<typeof ReviewTarget>;

/** A schedule's `--calibration-from`: where its reviewed runs are, and the target certified from them. */
export const CalibrationFrom = z.object({ location: z.string().min(1), target: ReviewTarget }).strict();
export type CalibrationFrom = z.infer<typeof CalibrationFrom>;

/**
 * What one firing took from the reviews (its run spec and summary.json keep it): the reviewed run,
 * the exact reviews file (sha256) and how many reviews it used, and the certified threshold, or
 * the refusal and what the firing ran with instead.
 */
export const ReviewCalibrationRecord = z
  .object({
    /** The schedule's --calibration-from location. */
    from: z.string(),
    /** The reviewed run's output location, its run id and its reviews.jsonl's sha256; null when none was found. */
    run: z.string().nullable(),
    runId: z.string().nullable(),
    reviewsSha256: z.string().nullable(),
    /** Reviews of the random slice used as the calibration sample, and the picked ones left out (biased). */
    reviews: z.number().int().nonnegative(),
    leftOut: z.number().int().nonnegative(),
    /** The newest review's time, when the files said. */
    latest: z.string().nullable(),
    target: ReviewTarget,
    certified: z.boolean(),
    /** Certified: the routing the firing uses and the promise in words. */
    metric: z.string().optional(),
    threshold: z.number().optional(),
    promise: z.string().optional(),
    /** Refused: why, and what the firing ran with instead (the schedule's own calibration). */
    refusal: z.string().optional(),
    fallback: z.string().optional(),
  })
  .strict();
export type ReviewCalibrationRecord = z.infer<typeof ReviewCalibrationRecord>;
