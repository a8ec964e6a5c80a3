/**
 * Calibration end to end on cached probabilities: sweep each metric on the calibration part,
 * apply every selection rule the labels allow, pick the requested one, and judge the pick on
 * the held-out test part. Pure; no models run here (see score-images.ts and prob-cache.ts).
 */
import type { ConfidenceMetric } from '../../config/schema.js';
import { type OracleBound, modelAccuracy, oracleBound, pointAt } from './evaluate.js';
import { ALL_METRICS, bestMetric, type RuleName, ruleSelector, type Selection } from './select.js';
import { type CalibrationEntry, type CascadeCosts, type Curve, type CurvePoint, sweepThresholds } from './sweep.js';
import { type WilsonInterval, wilsonInterval } from './wilson.js';

export interface CalibrateOptions {
  /** Rule that sets the threshold; default no-loss with labels, label-free without. */
  rule?: RuleName;
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
  rule: RuleName;
  metric: ConfidenceMetric;
  threshold: number;
  point: CurvePoint;
  reason: string;
  /** Wilson interval of the agreement on the kept images. */
  agreementInterval: WilsonInterval;
  perMetric: Partial<Record<ConfidenceMetric, { threshold: number; fractionToBig: number; reason: string }>>;
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
  rules: Partial<Record<RuleName, RuleOutcome | { error: string }>>;
  chosen: RuleOutcome;
  /** Curves on the calibration part, one per compared metric. */
  curves: Partial<Record<ConfidenceMetric, Curve>>;
  calibration: PartFigures;
  /** The chosen operating point judged on the test part; null when there is none. */
  test: (PartFigures & { point: CurvePoint; agreementInterval: WilsonInterval }) | null;
}

const LABELED_RULES: readonly RuleName[] = ['tinysaver', 'no-loss'];

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
  const options = { maxDrop: o.maxDrop ?? 0, targetAgreement: o.targetAgreement ?? 0.99, metrics: o.metrics ?? ALL_METRICS, z: o.z ?? 1.96 };
  if (!(options.maxDrop >= 0 && options.maxDrop <= 1)) throw new RangeError(`max drop must be in [0, 1], got ${options.maxDrop}`);
  if (!(options.targetAgreement > 0 && options.targetAgreement <= 1))
    throw new RangeError(`target agreement must be in (0, 1], got ${options.targetAgreement}`);
  const all = [...calibration, ...test];
  const labeledCount = all.filter((e) => e.label !== undefined).length;
  const labeled = labeledCount === all.length;
  // Some labels but not all: a labeled rule on a biased subset would mislead, so the default
  // rule is a labeled one and fails with the names of unlabeled images (see select.ts).
  const rule = o.rule ?? (labeledCount > 0 ? 'no-loss' : 'label-free');

  const curves: Partial<Record<ConfidenceMetric, Curve>> = {};
  for (const m of options.metrics) curves[m] = sweepThresholds(calibration, m, costs);
  const bigAccuracy = modelAccuracy(calibration, 'big');

  const apply = (name: RuleName): RuleOutcome => {
    const choice = bestMetric(calibration, costs, ruleSelector(name, bigAccuracy, options), options.metrics);
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
  for (const name of [...(labeled ? LABELED_RULES : []), 'label-free'] as RuleName[]) {
    try {
      rules[name] = apply(name);
    } catch (err) {
      rules[name] = { error: (err as Error).message };
    }
  }
  const picked = rules[rule];
  const chosen = picked && 'rule' in picked ? picked : apply(rule); // re-run to throw its error

  let testResult: CalibrationOutcome['test'] = null;
  if (test.length > 0) {
    const point = pointAt(test, chosen.metric, chosen.threshold, costs);
    testResult = { ...figures(test, costs, labeled), point, agreementInterval: wilsonInterval(point.agreeing, point.accepted, options.z) };
  }
  return { labeled, costs, options, rules, chosen, curves, calibration: figures(calibration, costs, labeled), test: testResult };
}
