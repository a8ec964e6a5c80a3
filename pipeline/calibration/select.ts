/**
 * Rules that pick a deployment threshold from a swept curve (see sweep.ts). Pure; no I/O.
 *
 * Shared tie-break: among points with the same fractionToBig (the same images kept on the
 * table), the highest threshold wins. Those thresholds are equivalent on the calibration data,
 * but the higher one keeps fewer unseen images, so it is the conservative choice.
 */
import type { ConfidenceMetric, RankReference } from '../../config/schema.js';
import { type CalibrationEntry, type CascadeCosts, type Curve, type CurvePoint, sweepThresholds } from './sweep.js';
import { type WilsonInterval, wilsonInterval } from './wilson.js';

export type RuleName = 'tinysaver' | 'no-loss' | 'label-free';

/** A chosen threshold and the curve point it yields, with a human-readable justification. */
export interface Selection {
  rule: RuleName;
  threshold: number;
  point: CurvePoint;
  reason: string;
}

/** A label-free selection also reports how sure we can be of the agreement it was chosen on. */
export interface LabelFreeSelection extends Selection {
  interval: WilsonInterval;
}

// Accuracies are ratios of counts; a tolerance keeps `bigAccuracy - maxDrop` rounding from
// rejecting a point that matches exactly.
const EPS = 1e-12;

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;

function sendAllPoint(curve: Curve): CurvePoint {
  const last = curve[curve.length - 1];
  if (last === undefined || last.accepted !== 0) throw new Error('calibration: curve has no send-all-to-big point');
  return last;
}

/** Labeled rules refuse partially labeled tables, since accuracy on a biased subset misleads. */
function requireLabels(curve: Curve, rule: RuleName): void {
  const { count, sampleKeys } = curve.missingLabels;
  if (count === 0) return;
  const total = curve[0]?.total ?? count;
  const more = count > sampleKeys.length ? ', …' : '';
  throw new Error(
    `${rule} rule needs a ground-truth label for every image, but ${count} of ${total} lack one ` +
      `(e.g. ${sampleKeys.map((k) => JSON.stringify(k)).join(', ')}${more})`,
  );
}

/** Lowest fractionToBig; then the given quality, higher first; then higher threshold. */
function better(a: CurvePoint, b: CurvePoint, quality: (p: CurvePoint) => number): boolean {
  if (a.fractionToBig !== b.fractionToBig) return a.fractionToBig < b.fractionToBig;
  const qa = quality(a);
  const qb = quality(b);
  if (qa !== qb) return qa > qb;
  return a.threshold > b.threshold;
}

/** TinySaver: descend while the little model is at least as accurate as big on what it keeps. */
export function tinySaverRule(curve: Curve): Selection {
  requireLabels(curve, 'tinysaver');
  let chosen = sendAllPoint(curve);
  for (let i = curve.length - 1; i >= 0; i--) {
    const p = curve[i]!;
    if (p.accepted === 0) continue; // keeping nothing holds vacuously
    // Compare counts, not ratios: both are over the same accepted images, and counts are exact.
    if (p.littleCorrectOnAccepted! < p.bigCorrectOnAccepted!) break;
    // Same accepted set as a higher threshold → keep the higher (conservative) one.
    if (p.accepted > chosen.accepted) chosen = p;
  }
  const reason =
    chosen.accepted === 0
      ? 'the little model is less accurate than big even on its most confident images; send all to big'
      : `little accuracy ${pct(chosen.littleAccuracyOnAccepted!)} ≥ big ${pct(chosen.bigAccuracyOnAccepted!)} ` +
        `on the ${chosen.accepted} images it keeps, and at every higher threshold`;
  return { rule: 'tinysaver', threshold: chosen.threshold, point: chosen, reason };
}

/** Cheapest point whose cascade accuracy stays within maxDrop of the big model's accuracy. */
export function noLossRule(curve: Curve, bigAccuracy: number, maxDrop = 0): Selection {
  requireLabels(curve, 'no-loss');
  const floor = bigAccuracy - maxDrop;
  let chosen: CurvePoint | undefined;
  for (const p of curve) {
    if (p.cascadeAccuracy! + EPS < floor) continue;
    if (chosen === undefined || better(p, chosen, (q) => q.cascadeAccuracy!)) chosen = p;
  }
  if (chosen === undefined) {
    const best = sendAllPoint(curve).cascadeAccuracy!;
    throw new Error(
      `no-loss rule: no threshold reaches accuracy ${pct(floor)} (big accuracy ${pct(bigAccuracy)} − ${pct(maxDrop)}); ` +
        `sending all to big gives ${pct(best)} on this table`,
    );
  }
  const reason =
    `cascade accuracy ${pct(chosen.cascadeAccuracy!)} ≥ ${pct(floor)} (big ${pct(bigAccuracy)} − ${pct(maxDrop)}) ` +
    `with ${pct(chosen.fractionToBig)} sent to big`;
  return { rule: 'no-loss', threshold: chosen.threshold, point: chosen, reason };
}

/** Without labels: cheapest point whose little/big top-1 agreement on kept images meets the target. */
export function labelFreeRule(curve: Curve, targetAgreement: number, z = 1.96): LabelFreeSelection {
  let chosen = sendAllPoint(curve); // agreement 1 by definition, so a candidate always exists
  for (const p of curve) {
    if (p.agreement + EPS < targetAgreement) continue;
    if (better(p, chosen, (q) => q.agreement)) chosen = p;
  }
  const interval = wilsonInterval(chosen.agreeing, chosen.accepted, z);
  const reason =
    chosen.accepted === 0
      ? `no threshold keeps any image with agreement ≥ ${pct(targetAgreement)}; send all to big`
      : `agreement ${chosen.agreeing}/${chosen.accepted} = ${pct(chosen.agreement)} ≥ ${pct(targetAgreement)} ` +
        `(Wilson ${pct(interval.low)}–${pct(interval.high)}) with ${pct(chosen.fractionToBig)} sent to big`;
  return { rule: 'label-free', threshold: chosen.threshold, point: chosen, reason, interval };
}

/**
 * Rule `name` as a function of a curve, for a table on which the big model's accuracy is
 * `bigAccuracy` (null without labels: the no-loss rule then reports the missing labels itself).
 */
export function ruleSelector(
  name: RuleName,
  bigAccuracy: number | null,
  o: { maxDrop?: number; targetAgreement?: number; z?: number } = {},
): (curve: Curve) => Selection {
  if (name === 'tinysaver') return tinySaverRule;
  if (name === 'label-free') return (curve) => labelFreeRule(curve, o.targetAgreement ?? 0.99, o.z);
  return (curve) => noLossRule(curve, bigAccuracy ?? 0, o.maxDrop ?? 0);
}

/** The outcome of bestMetric: the winning metric, its selection, and every metric's selection. */
export interface MetricChoice<S extends Selection> {
  metric: ConfidenceMetric;
  selection: S;
  perMetric: Partial<Record<ConfidenceMetric, S>>;
}

export const ALL_METRICS: readonly ConfidenceMetric[] = ['maxprob', 'margin', 'entropy'];

/** Apply one rule under each metric and keep the one that sends the fewest images to big (rank: against `reference`). */
export function bestMetric<S extends Selection>(
  table: readonly CalibrationEntry[],
  costs: CascadeCosts,
  rule: (curve: Curve) => S,
  metrics: readonly ConfidenceMetric[] = ALL_METRICS,
  reference?: RankReference,
): MetricChoice<S> {
  if (metrics.length === 0) throw new Error('bestMetric: no metrics to compare');
  // Labeled rules compare on cascade accuracy; label-free ones only have agreement.
  const quality = (p: CurvePoint): number => p.cascadeAccuracy ?? p.agreement;
  const perMetric: Partial<Record<ConfidenceMetric, S>> = {};
  let best: { metric: ConfidenceMetric; selection: S } | undefined;
  for (const metric of metrics) {
    const selection = rule(sweepThresholds(table, metric, costs, reference));
    perMetric[metric] = selection;
    const a = selection.point;
    const b = best?.selection.point;
    // Remaining ties go to the earlier metric in `metrics`; thresholds of different metrics aren't comparable.
    if (b === undefined || a.fractionToBig < b.fractionToBig || (a.fractionToBig === b.fractionToBig && quality(a) > quality(b))) {
      best = { metric, selection };
    }
  }
  return { ...best!, perMetric };
}
