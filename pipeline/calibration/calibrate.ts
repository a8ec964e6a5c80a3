/**
 * Calibration end to end on cached probabilities: sweep each metric on the calibration part,
 * apply every selection rule the labels allow, pick the requested one, and judge the pick on
 * the held-out test part. Pure; no models run here (see score-images.ts and prob-cache.ts).
 *
 * The default rule is `guaranteed`: a threshold whose agreement promise holds on new images
 * with probability ≥ 1 − δ (risk-control.ts). The point-estimate rules (tinysaver, no-loss,
 * label-free) stay available; they hold about half the time on new images.
 */
import { CascadeFailure } from '../../config/errors.js';
import type { ConfidenceMetric, RankReference } from '../../config/schema.js';
import { confidence, rankReference, topK } from '../routing.js';
import { type OracleBound, modelAccuracy, oracleBound, pointAt } from './evaluate.js';
import { certifyAccuracyDrop, certifyAgreement, type RiskMethod } from './risk-control.js';
import { ALL_METRICS, bestMetric, type RuleName, ruleSelector, type Selection } from './select.js';
import { type CalibrationEntry, type CascadeCosts, type Curve, type CurvePoint, sweepThresholds } from './sweep.js';
import { type WilsonInterval, wilsonInterval } from './wilson.js';

/** Rules with a finite-sample guarantee: agreement with big (label-free) or accuracy drop against big (labeled). */
export type GuaranteedRule = 'guaranteed' | 'guaranteed-drop';
/** Every rule `cascade calibrate --rule` takes. */
export type CalibrationRule = RuleName | GuaranteedRule;
export const CALIBRATION_RULES: readonly CalibrationRule[] = ['guaranteed', 'guaranteed-drop', 'tinysaver', 'no-loss', 'label-free'];

/** What a guaranteed rule promises, for calib.json and the report. */
export interface Guarantee {
  method: RiskMethod;
  delta: number;
  /** agreement: little/big agreement on kept images ≥ bound; accuracy-drop: cascade accuracy ≥ big − level. */
  kind: 'agreement' | 'accuracy-drop';
  /** The requested target agreement, or the allowed accuracy drop. */
  level: number;
  /** agreement: the certified lower bound on agreement (≥ level); accuracy-drop: the allowed drop. */
  bound: number;
  /** Images the guarantee was computed on. */
  images: number;
  /** The promise in words. */
  promise: string;
}

/** The sample cannot certify the requested target (exit 1): the message names what it can certify. */
export class CalibrationRefused extends CascadeFailure {
  override name = 'CalibrationRefused';
}

export interface CalibrateOptions {
  /** Rule that sets the threshold; default guaranteed. */
  rule?: CalibrationRule;
  /** Guaranteed rules: the promise fails with probability at most delta (default 0.05). */
  delta?: number;
  /** Guaranteed rules: Learn-then-Test fixed sequence (default) or SGR. */
  method?: RiskMethod;
  /** no-loss: accept cascade accuracy down to big accuracy − maxDrop. */
  maxDrop?: number;
  /** label-free: required little/big agreement on the images little keeps. */
  targetAgreement?: number;
  /** Metrics to compare; the best one is kept. */
  metrics?: readonly ConfidenceMetric[];
  /** z of the Wilson intervals (1.96 ≈ 95%). */
  z?: number;
}

/** One rule's pick: the best metric's threshold and what it does on the calibration part. */
export interface RuleOutcome {
  rule: CalibrationRule;
  metric: ConfidenceMetric;
  threshold: number;
  point: CurvePoint;
  reason: string;
  /** Wilson interval of the agreement on the kept images. */
  agreementInterval: WilsonInterval;
  perMetric: Partial<Record<ConfidenceMetric, { threshold: number; fractionToBig: number; reason: string }>>;
  /** Only for guaranteed rules. */
  guarantee?: Guarantee;
}

export interface PartFigures {
  images: number;
  littleAccuracy: number | null;
  bigAccuracy: number | null;
  oracle: OracleBound | null;
}

export interface CalibrationOutcome {
  labeled: boolean;
  costs: CascadeCosts;
  options: Required<Omit<CalibrateOptions, 'rule'>>;
  /** Every rule that could be applied, or why it could not. */
  rules: Partial<Record<CalibrationRule, RuleOutcome | { error: string }>>;
  /** Things the reader should know, e.g. that few images make a wide interval. */
  warnings: string[];
  chosen: RuleOutcome;
  /** Curves on the calibration part, one per compared metric. */
  curves: Partial<Record<ConfidenceMetric, Curve>>;
  /** What the rank metric ranked against (the calibration part's little rows); only when rank was compared. */
  rankReference?: RankReference;
  calibration: PartFigures;
  /** The chosen operating point judged on the test part; null when there is none. */
  test: (PartFigures & { point: CurvePoint; agreementInterval: WilsonInterval }) | null;
}

const LABELED_RULES: readonly RuleName[] = ['tinysaver', 'no-loss'];

const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;

/**
 * Metrics a guaranteed rule compares unless told: rank alone, so it is certified at the full δ.
 * Fixed in advance, it kept more images than the best of margin and pnorm at δ/2 each (docs/results.md, issue 18).
 */
export const GUARANTEED_METRICS: readonly ConfidenceMetric[] = ['rank'];

/** An interval wider than this on the chosen point gets a warning: the promise rests on few images. */
export const WIDE_INTERVAL = 0.1;

/**
 * A guaranteed rule under each metric, each at δ / (number of metrics) so that picking the
 * cheapest metric afterwards keeps the overall guarantee (Bonferroni); the metric keeping the
 * most images wins. Throws CalibrationRefused when no metric certifies.
 */
function guaranteedRule(
  name: GuaranteedRule,
  calibration: readonly CalibrationEntry[],
  costs: CascadeCosts,
  o: Required<Omit<CalibrateOptions, 'rule'>>,
  metrics: readonly ConfidenceMetric[],
  reference: RankReference | undefined,
): RuleOutcome {
  const perMetricDelta = o.delta / metrics.length;
  const split = metrics.length > 1 ? ` (δ split over ${metrics.length} metrics: ${metrics.join(', ')})` : '';
  const picks: Array<{ metric: ConfidenceMetric; threshold: number; bound: number; accepted: number }> = [];
  const perMetric: RuleOutcome['perMetric'] = {};
  const refusals: string[] = [];
  for (const metric of metrics) {
    const conf = calibration.map((e) => confidence(e.little, metric, reference));
    if (name === 'guaranteed') {
      const sample = calibration.map((e, i) => ({ confidence: conf[i]!, agrees: topK(e.little, 1)[0] === topK(e.big, 1)[0] }));
      const c = certifyAgreement(sample, o.targetAgreement, perMetricDelta, { method: o.method });
      if (c.certified) picks.push({ metric, threshold: c.threshold, bound: c.bound, accepted: c.accepted });
      else refusals.push(c.reason);
    } else {
      const sample = calibration.map((e, i) => {
        if (e.label === undefined) throw new Error(`guaranteed-drop rule needs a ground-truth label for every image; ${JSON.stringify(e.key)} has none`);
        return { confidence: conf[i]!, littleCorrect: topK(e.little, 1)[0] === e.label, lastCorrect: topK(e.big, 1)[0] === e.label };
      });
      const c = certifyAccuracyDrop(sample, o.maxDrop, perMetricDelta);
      if (c.certified) picks.push({ metric, threshold: c.threshold, bound: o.maxDrop, accepted: c.accepted });
      else refusals.push(c.reason);
    }
  }
  for (const p of picks) {
    const point = pointAt(calibration, p.metric, p.threshold, costs, reference);
    perMetric[p.metric] = { threshold: p.threshold, fractionToBig: point.fractionToBig, reason: `certified, keeps ${p.accepted} images` };
  }
  const best = picks.reduce<(typeof picks)[number] | undefined>((a, p) => (a === undefined || p.accepted > a.accepted ? p : a), undefined);
  if (best === undefined) {
    // One line: the first metric's explanation speaks for all (they share the sample size).
    const loosen = name === 'guaranteed' ? 'Lower --target-agreement' : 'Raise --max-drop';
    const point = name === 'guaranteed' ? 'label-free' : 'no-loss';
    throw new CalibrationRefused(
      `${name} rule refused: ${refusals[0]}${split}. ${loosen}, add calibration images, ` +
        `or choose a point-estimate rule (--rule ${point}) knowing it holds about half the time`,
    );
  }
  const point = pointAt(calibration, best.metric, best.threshold, costs, reference);
  const kind = name === 'guaranteed' ? 'agreement' : 'accuracy-drop';
  const promise =
    kind === 'agreement'
      ? o.method === 'ltt-batch'
        ? `with probability ≥ ${1 - o.delta}, on a batch of new images from the same distribution in which the little model keeps about ${best.accepted} or more, ` +
          `its agreement with big on the kept images is ≥ ${pct(best.bound, 2)}`
        : `with probability ≥ ${1 - o.delta}, agreement with big on new images from the same distribution that the little model keeps is ≥ ${pct(best.bound, 2)}`
      : `with probability ≥ ${1 - o.delta}, cascade accuracy on new images from the same distribution is ≥ big's accuracy − ${pct(o.maxDrop, 2)}`;
  const guarantee: Guarantee = {
    method: o.method,
    delta: o.delta,
    kind,
    level: kind === 'agreement' ? o.targetAgreement : o.maxDrop,
    bound: best.bound,
    images: calibration.length,
    promise,
  };
  return {
    rule: name,
    metric: best.metric,
    threshold: best.threshold,
    point,
    reason: `${promise} (${o.method}${split.replace(' (', ', ').replace(/\)$/, '')}); keeps ${point.accepted} of ${point.total} calibration images`,
    agreementInterval: wilsonInterval(point.agreeing, point.accepted, o.z),
    perMetric,
    guarantee,
  };
}

function figures(table: readonly CalibrationEntry[], costs: CascadeCosts, labeled: boolean): PartFigures {
  return {
    images: table.length,
    littleAccuracy: modelAccuracy(table, 'little'),
    bigAccuracy: modelAccuracy(table, 'big'),
    oracle: labeled ? oracleBound(table, costs) : null,
  };
}

/** Calibrate on `calibration`, report on `test` (may be empty). */
export function calibrate(
  calibration: readonly CalibrationEntry[],
  test: readonly CalibrationEntry[],
  costs: CascadeCosts,
  o: CalibrateOptions = {},
): CalibrationOutcome {
  if (calibration.length === 0) throw new Error('calibrate: no calibration images (all failed to decode, or the split left none)');
  const rule = o.rule ?? 'guaranteed';
  const options = {
    maxDrop: o.maxDrop ?? 0,
    targetAgreement: o.targetAgreement ?? 0.99,
    // Every rule of the report is computed on the same metrics, so the chosen rule's defaults apply to all.
    metrics: o.metrics ?? (o.rule === undefined || o.rule === 'guaranteed' || o.rule === 'guaranteed-drop' ? GUARANTEED_METRICS : ALL_METRICS),
    z: o.z ?? 1.96,
    delta: o.delta ?? 0.05,
    method: o.method ?? 'ltt',
  };
  if (!(options.delta > 0 && options.delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${options.delta}`);
  if (!(options.maxDrop >= 0 && options.maxDrop <= 1)) throw new RangeError(`max drop must be in [0, 1], got ${options.maxDrop}`);
  if (!(options.targetAgreement > 0 && options.targetAgreement <= 1))
    throw new RangeError(`target agreement must be in (0, 1], got ${options.targetAgreement}`);
  const all = [...calibration, ...test];
  const labeledCount = all.filter((e) => e.label !== undefined).length;
  const labeled = labeledCount === all.length;

  // rank ranks against the very images it is certified on. It depends on their little rows only,
  // never on agreement or labels; strictly, Learn-then-Test assumes a signal fixed before the
  // sample, so the coverage of this one was measured (bench/risk-splits.ts, docs/results.md).
  // The test part is ranked against the same reference, as a run will rank new images.
  const reference = options.metrics.includes('rank') ? rankReference(calibration.map((e) => e.little)) : undefined;
  const curves: Partial<Record<ConfidenceMetric, Curve>> = {};
  for (const m of options.metrics) curves[m] = sweepThresholds(calibration, m, costs, reference);
  const bigAccuracy = modelAccuracy(calibration, 'big');

  const apply = (name: CalibrationRule): RuleOutcome => {
    if (name === 'guaranteed' || name === 'guaranteed-drop') return guaranteedRule(name, calibration, costs, options, options.metrics, reference);
    const choice = bestMetric(calibration, costs, ruleSelector(name, bigAccuracy, options), options.metrics, reference);
    const { point } = choice.selection;
    const perMetric: RuleOutcome['perMetric'] = {};
    for (const [m, s] of Object.entries(choice.perMetric) as Array<[ConfidenceMetric, Selection]>) {
      perMetric[m] = { threshold: s.threshold, fractionToBig: s.point.fractionToBig, reason: s.reason };
    }
    return {
      rule: name,
      metric: choice.metric,
      threshold: choice.selection.threshold,
      point,
      reason: choice.selection.reason,
      agreementInterval: wilsonInterval(point.agreeing, point.accepted, options.z),
      perMetric,
    };
  };

  const rules: CalibrationOutcome['rules'] = {};
  const names: CalibrationRule[] = ['guaranteed', ...(labeled ? (['guaranteed-drop', ...LABELED_RULES] as const) : []), 'label-free'];
  for (const name of names) {
    try {
      rules[name] = apply(name);
    } catch (err) {
      rules[name] = { error: (err as Error).message };
    }
  }
  const picked = rules[rule];
  const chosen = picked && 'rule' in picked ? picked : apply(rule); // re-run to throw its error

  const warnings: string[] = [];
  const width = chosen.agreementInterval.high - chosen.agreementInterval.low;
  if (chosen.point.accepted > 0 && width > WIDE_INTERVAL) {
    warnings.push(
      `few images: the agreement on the ${chosen.point.accepted} kept calibration images is ${pct(chosen.point.agreement)}, ` +
        `but its 95% interval is ${pct(chosen.agreementInterval.low)}–${pct(chosen.agreementInterval.high)} (${pct(width)} wide); ` +
        'expect new images to land anywhere in it',
    );
  }

  let testResult: CalibrationOutcome['test'] = null;
  if (test.length > 0) {
    const point = pointAt(test, chosen.metric, chosen.threshold, costs, reference);
    testResult = { ...figures(test, costs, labeled), point, agreementInterval: wilsonInterval(point.agreeing, point.accepted, options.z) };
  }
  return {
    labeled,
    costs,
    options,
    rules,
    warnings,
    chosen,
    curves,
    ...(reference ? { rankReference: reference } : {}),
    calibration: figures(calibration, costs, labeled),
    test: testResult,
  };
}
