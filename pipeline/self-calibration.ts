/**
 * Self-calibrating runs (`--target-agreement`), the data side: the warm-up lane's parts, the
 * sample they give the certification, the decision a run stores once, and what the summary
 * reports. Pure; certify-warmup.ts reads the warm-up and certifies it, routing-resolver.ts routes
 * by the decision, and the queue side is queue/threshold-decision.ts.
 */
import { z } from 'zod';
import { ConfidenceMetric, RankReference, Route } from '../config/schema.js';
import { type Certification, type ScoredImage, certifyAgreement } from './calibration/risk-control.js';
import { rankOf, rankReferenceOf } from './routing.js';

/**
 * The first stage's answer for one warm-up image that it inferred (forwarded, never kept), with
 * its margin and pnorm, from which a rank run builds its reference (absent in parts written
 * before rank could be self-calibrated).
 */
export const WarmupAnswer = z.object({
  pos: z.number().int().nonnegative(),
  label: z.number().int(),
  confidence: z.number(),
  margin: z.number().optional(),
  pnorm: z.number().optional(),
});
export type WarmupAnswer = z.infer<typeof WarmupAnswer>;

type FirstParts = ReadonlyArray<{ batch: number; warmupAnswers?: WarmupAnswer[] }>;

/**
 * The sample the threshold is certified on: each warm-up image that both the first and the last
 * stage answered (error rows have no answer), scored by the first stage's confidence (with a
 * reference: its rank against it) and whether its top-1 is the last stage's.
 */
export function warmupSample(
  first: FirstParts,
  last: ReadonlyArray<{ batch: number; rows: ReadonlyArray<{ pos: number; label: number | null; error: unknown }> }>,
  reference?: RankReference,
): ScoredImage[] {
  const lastLabel = new Map<string, number>();
  for (const p of last) for (const r of p.rows) if (!r.error && r.label !== null) lastLabel.set(`${p.batch}:${r.pos}`, r.label);
  const sample: ScoredImage[] = [];
  for (const p of first) {
    for (const a of p.warmupAnswers ?? []) {
      const big = lastLabel.get(`${p.batch}:${a.pos}`);
      if (big === undefined) continue;
      const confidence = reference ? rankOf(signal(a, 'margin'), signal(a, 'pnorm'), reference) : a.confidence;
      sample.push({ confidence, agrees: a.label === big });
    }
  }
  return sample;
}

/**
 * The rank reference of a self-calibrating rank run: the first stage's margin and pnorm on every
 * warm-up image it answered (the little model's distribution; the last stage plays no part).
 * Undefined when it answered none: the certification then refuses on an empty sample.
 */
export function warmupReference(first: FirstParts): RankReference | undefined {
  const answers = first.flatMap((p) => p.warmupAnswers ?? []);
  if (answers.length === 0) return undefined;
  return rankReferenceOf({ margin: answers.map((a) => signal(a, 'margin')), pnorm: answers.map((a) => signal(a, 'pnorm')) });
}

function signal(a: WarmupAnswer, which: 'margin' | 'pnorm'): number {
  const v = a[which];
  // Parts of an older worker lack the signals: routing by rank without them would be a guess.
  if (v === undefined) throw new Error(`warm-up answer at position ${a.pos} has no ${which}: it was written by a worker that cannot self-calibrate rank`);
  return v;
}

/**
 * What a rank run's decision adds (optional: decisions stored before, and those of other
 * metrics, have neither): the metric it certified and the reference built from the warm-up, which
 * every worker of the run then ranks against.
 */
const RankFields = { metric: ConfidenceMetric.optional(), rankReference: RankReference.optional() };

/**
 * Where the run's ordinary images go once decided (absent in decisions stored before: through the
 * cascade): `big-only` when certification was refused, or when the certified cascade would cost
 * more per image than the last stage alone at the warm-up's measured costs (pipeline/cost/route-choice.ts).
 */
const RouteFields = {
  route: Route.optional(),
  routeReason: z.string().optional(),
  /** The warm-up's measured machine seconds per image behind the route (null where unmeasured). */
  expectedCost: z.object({ cascadePerImage: z.number().nullable(), bigOnlyPerImage: z.number().nullable() }).optional(),
};

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
    ...RankFields,
    ...RouteFields,
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
    ...RankFields,
    ...RouteFields,
  }),
]);
export type ThresholdDecision = z.infer<typeof ThresholdDecision>;

/** Certify the target on the warm-up sample and phrase the outcome as the decision a run stores (a rank run's with its reference). */
export function decideThreshold(sample: readonly ScoredImage[], target: number, delta: number, now: Date, rankReference?: RankReference): ThresholdDecision {
  const d = toDecision(certifyAgreement(sample, target, delta), sample.length, now);
  return rankReference ? { ...d, metric: 'rank', rankReference } : d;
}

/** The decision of a self-calibrating rank run: its reference from the warm-up answers (none when there were none), its threshold certified by rank against it. */
export function decideRank(first: FirstParts, last: Parameters<typeof warmupSample>[1], target: number, delta: number, now: Date): ThresholdDecision {
  const reference = warmupReference(first);
  const d = decideThreshold(warmupSample(first, last, reference), target, delta, now, reference);
  return { ...d, metric: 'rank' };
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

/** A decision as summary.json records it: the reference (up to 2 × 1025 numbers) by its size only. */
export function summaryDecision(d: ThresholdDecision): SummaryDecision {
  const { rankReference, ...rest } = d;
  return rankReference ? { ...rest, rankReferenceSize: rankReference.margin.length } : rest;
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
  /** The stored decision (its rank reference by size); null if the run ended before one was made (an empty source). */
  decision: z
    .union([
      ThresholdDecision.options[0].omit({ rankReference: true }).extend({ rankReferenceSize: z.number().int().optional() }),
      ThresholdDecision.options[1].omit({ rankReference: true }).extend({ rankReferenceSize: z.number().int().optional() }),
    ])
    .nullable(),
});
export type SelfCalibrationSummary = z.infer<typeof SelfCalibrationSummary>;
export type SummaryDecision = NonNullable<SelfCalibrationSummary['decision']>;
