/**
 * The reviews section of a run summary (summary.json `reviews`): the schema of what the human
 * reviews show, computed by review-report.ts. Apart from it so the summary schema imports no maths.
 */
import { z } from 'zod';
import { wilsonInterval } from '../calibration/wilson.js';

/** A proportion with its count and 95% Wilson interval. */
const Estimate = z.object({ n: z.number().int().nonnegative(), hits: z.number().int().nonnegative(), rate: z.number(), low: z.number(), high: z.number() });
export type Estimate = z.infer<typeof Estimate>;

const Accuracy = z.object({ overall: Estimate, byStage: z.record(z.string(), Estimate) });
export type Accuracy = z.infer<typeof Accuracy>;

/** The reviews report, as `cascade import reviews --json` prints it and summary.json stores it. */
export const ReviewReport = z.object({
  /** Reviews of rows of this run. */
  reviewed: z.number().int().nonnegative(),
  /** The run's labelled rows, and the fraction of them reviewed. */
  labelledRows: z.number().int().nonnegative(),
  coverage: z.number(),
  /** Reviews of error rows: the human gave a label the cascade could not (not in any accuracy). */
  errorRowsLabelled: z.number().int().nonnegative(),
  /** Every reviewed labelled row: exact when coverage is 1, biased toward the export's picks otherwise. */
  accuracy: Accuracy,
  intervals: z.literal('95% Wilson score'),
  /** The accuracy of each selection apart. */
  samples: z.object({
    /** The export's random slice (reason `random`): a uniform sample of the labelled rows, so unbiased for the run. */
    random: z.object({ bias: z.literal('unbiased'), accuracy: Accuracy }),
    /** Everything else (picked as likely wrong, or of unknown selection): biased toward errors. */
    selected: z.object({ bias: z.literal('biased'), accuracy: Accuracy }),
  }),
  agreement: z.object({
    /** Reviewed images the audit had both stages answer: how often they disagreed, and who the human sided with. */
    littleBig: z.object({ disagreement: Estimate, littleRight: z.number().int(), bigRight: z.number().int(), neitherRight: z.number().int() }),
    /** Reviewed images with several annotations, and how many of those had annotators disagree. */
    annotators: z.object({ severalAnnotations: z.number().int().nonnegative(), disagreeing: z.number().int().nonnegative() }),
  }),
});
export type ReviewReport = z.infer<typeof ReviewReport>;

/** A count of hits out of n as an estimate with its Wilson interval. */
export function estimate(hits: number, n: number): Estimate {
  const w = wilsonInterval(hits, n);
  return { n, hits, rate: n ? hits / n : 0, low: w.low, high: w.high };
}
