/**
 * Self-calibrating runs (`--target-agreement`), the data side: the warm-up lane's parts, the
 * sample they give the certification, the decision a run stores once, and what the summary
 * reports. Pure; the queue side is queue/threshold-decision.ts.
 */
import { z } from 'zod';
import { type Certification, type ScoredImage, certifyAgreement } from './calibration/risk-control.js';

/** The first stage's answer for one warm-up image that it inferred (forwarded, never kept). */
export const WarmupAnswer = z.object({ pos: z.number().int().nonnegative(), label: z.number().int(), confidence: z.number() });
export type WarmupAnswer = z.infer<typeof WarmupAnswer>;

/**
 * The sample the threshold is certified on: each warm-up image that both the first and the last
 * stage answered (error rows have no answer), scored by the first stage's confidence and whether
 * its top-1 is the last stage's.
 */
export function warmupSample(
  first: ReadonlyArray<{ batch: number; warmupAnswers?: WarmupAnswer[] }>,
  last: ReadonlyArray<{ batch: number; rows: ReadonlyArray<{ pos: number; label: number | null; error: unknown }> }>,
): ScoredImage[] {
  const lastLabel = new Map<string, number>();
  for (const p of last) for (const r of p.rows) if (!r.error && r.label !== null) lastLabel.set(`${p.batch}:${r.pos}`, r.label);
  const sample: ScoredImage[] = [];
  for (const p of first) {
    for (const a of p.warmupAnswers ?? []) {
      const big = lastLabel.get(`${p.batch}:${a.pos}`);
      if (big !== undefined) sample.push({ confidence: a.confidence, agrees: a.label === big });
    }
  }
  return sample;
}

/** The stored form of a certification (JSON has no Infinity: an unknown number of images needed is null). */
export const ThresholdDecision = z.discriminatedUnion('certified', [
  z.object({
    certified: z.literal(true),
    target: z.number(),
    delta: z.number(),
    threshold: z.number(),
    /** With probability ≥ 1 − delta, agreement on new accepted images is ≥ bound (≥ target). */
    bound: z.number(),
    accepted: z.number().int(),
    /** Warm-up images in the sample (answered by both stages). */
    sample: z.number().int(),
    empiricalAgreement: z.number(),
    fractionAccepted: z.number(),
    decidedAt: z.string(),
  }),
  z.object({
    certified: z.literal(false),
    target: z.number(),
    delta: z.number(),
    sample: z.number().int(),
    strongestCertifiable: z.number().nullable(),
    imagesNeeded: z.number().nullable(),
    reason: z.string(),
    decidedAt: z.string(),
  }),
]);
export type ThresholdDecision = z.infer<typeof ThresholdDecision>;

/** Certify the target on the warm-up sample and phrase the outcome as the decision a run stores. */
export function decideThreshold(sample: readonly ScoredImage[], target: number, delta: number, now: Date): ThresholdDecision {
  return toDecision(certifyAgreement(sample, target, delta), sample.length, now);
}

/** A certification as a stored decision. */
export function toDecision(c: Certification, sample: number, now: Date): ThresholdDecision {
  const decidedAt = now.toISOString();
  if (c.certified) {
    const { target, delta, threshold, bound, accepted, empiricalAgreement, fractionAccepted } = c;
    return { certified: true, target, delta, threshold, bound, accepted, sample, empiricalAgreement, fractionAccepted, decidedAt };
  }
  const { target, delta, strongestCertifiable, imagesNeeded, reason } = c;
  return {
    certified: false,
    target,
    delta,
    sample,
    strongestCertifiable,
    imagesNeeded: Number.isFinite(imagesNeeded) ? imagesNeeded : null,
    reason,
    decidedAt,
  };
}

/** The threshold the first stage routes with once decided: a refused certification keeps nothing (all to the last stage). */
export function routingThreshold(d: ThresholdDecision): number {
  return d.certified ? d.threshold : Number.POSITIVE_INFINITY;
}

/** One line on a refused decision, for the warning log and the status (the reason names the strongest target and the images needed). */
export function refusalLine(d: Extract<ThresholdDecision, { certified: false }>): string {
  // One decimal, unless it would round the target (99.99% is not 100.0%).
  const pct = (x: number) => `${(x * 100).toFixed(Number((x * 100).toFixed(1)) === Number((x * 100).toFixed(4)) ? 1 : 2)}%`;
  return `the warm-up sample (${d.sample} images) cannot certify ${pct(d.target)} agreement at δ = ${d.delta}, so every image goes to the last stage: ${d.reason}`;
}

/** What summary.json records of a self-calibrating run. */
export const SelfCalibrationSummary = z.object({
  targetAgreement: z.number(),
  delta: z.number(),
  /** Images in the warm-up sample (each labelled by every stage; its rows are the last stage's). */
  warmupImages: z.number().int(),
  /** GMACs the warm-up spent: every stage on each warm-up image it inferred. */
  warmupGmacs: z.number(),
  /** The stored decision; null if the run ended before one was made (an empty source). */
  decision: ThresholdDecision.nullable(),
});
export type SelfCalibrationSummary = z.infer<typeof SelfCalibrationSummary>;
