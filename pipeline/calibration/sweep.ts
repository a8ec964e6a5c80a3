/**
 * Threshold sweep over a calibration table: for every threshold that changes which images the
 * little model keeps, the cost and quality of the cascade. Pure; no I/O.
 */
import type { ConfidenceMetric, RankReference } from '../../config/schema.js';
import { accepts, confidence, topK } from '../routing.js';

/** One image of a calibration table: both models' probability rows and, optionally, the truth. */
export interface CalibrationEntry {
  key: string;
  little: Float32Array;
  big: Float32Array;
  label?: number;
}

/** Per-image compute of each model, in GMACs. */
export interface CascadeCosts {
  littleGmacs: number;
  bigGmacs: number;
}

/** The cascade's behaviour on the table at one threshold. */
export interface CurvePoint {
  threshold: number;
  /** Images in the table. */
  total: number;
  /** Images with confidence ≥ threshold, kept by the little model. */
  accepted: number;
  /** Accepted images where little top-1 == big top-1. */
  agreeing: number;
  fractionToBig: number;
  /** agreeing / accepted; 1 when none are accepted (nothing kept, nothing can disagree). */
  agreement: number;
  /** Counts behind the accuracies, so callers can build their own intervals; null when unlabeled. */
  littleCorrectOnAccepted: number | null;
  bigCorrectOnAccepted: number | null;
  littleAccuracyOnAccepted: number | null;
  bigAccuracyOnAccepted: number | null;
  cascadeAccuracy: number | null;
  gmacsPerImage: number;
}

/** Images without a label; the sweep still runs (label-free rules need it), labeled rules refuse. */
export interface MissingLabels {
  count: number;
  /** Up to 3 keys, for the error message. */
  sampleKeys: string[];
}

/**
 * Points sorted by ascending threshold. It is still a plain CurvePoint[]; `missingLabels` rides
 * along so labeled rules can name the offending images without seeing the table.
 */
export type Curve = CurvePoint[] & { readonly missingLabels: MissingLabels };

/** Threshold of the last point: above any confidence (which lies in [0, 1]), so all go to big. */
export const SEND_ALL_THRESHOLD = 2;

/** Sweep every threshold that matters in O(n log n): one sort by confidence, then prefix counts (rank: against `reference`). */
export function sweepThresholds(table: readonly CalibrationEntry[], metric: ConfidenceMetric, costs: CascadeCosts, reference?: RankReference): Curve {
  const n = table.length;
  if (n === 0) throw new Error('sweepThresholds: the calibration table is empty');
  if (!(costs.littleGmacs >= 0) || !(costs.bigGmacs >= 0)) {
    throw new RangeError(`sweepThresholds: costs must be non-negative numbers, got ${JSON.stringify(costs)}`);
  }

  const conf = new Float64Array(n);
  const agree = new Uint8Array(n);
  const littleOk = new Uint8Array(n);
  const bigOk = new Uint8Array(n);
  const missing: string[] = [];
  let missingCount = 0;
  let bigCorrectTotal = 0;
  for (let i = 0; i < n; i++) {
    const e = table[i]!;
    if (e.little.length === 0 || e.little.length !== e.big.length) {
      throw new Error(
        `sweepThresholds: image ${JSON.stringify(e.key)} has ${e.little.length} little and ${e.big.length} big classes; ` +
          'they must be equal and non-zero for top-1 answers to be comparable',
      );
    }
    const c = confidence(e.little, metric, reference);
    // NaN would silently never be accepted and would break the sort; it means a broken row.
    if (Number.isNaN(c)) throw new Error(`sweepThresholds: image ${JSON.stringify(e.key)} has a NaN ${metric} confidence`);
    // Above 1 means logits were passed, and the send-all threshold would no longer send all.
    if (c > 1 + 1e-3) {
      throw new Error(`sweepThresholds: image ${JSON.stringify(e.key)} has ${metric} confidence ${c} > 1; the table must hold probabilities, not logits`);
    }
    conf[i] = c;
    const lt = topK(e.little, 1)[0]!;
    const bt = topK(e.big, 1)[0]!;
    agree[i] = lt === bt ? 1 : 0;
    if (e.label === undefined) {
      missingCount++;
      if (missing.length < 3) missing.push(e.key);
    } else {
      littleOk[i] = lt === e.label ? 1 : 0;
      bigOk[i] = bt === e.label ? 1 : 0;
      bigCorrectTotal += bigOk[i]!;
    }
  }
  const labeled = missingCount === 0;

  // Highest confidence first, so lowering the threshold only ever adds images to the accepted set.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => conf[b]! - conf[a]!);

  const thresholds = new Set<number>([0, SEND_ALL_THRESHOLD]);
  for (let i = 0; i < n; i++) thresholds.add(conf[i]!);
  const descending = [...thresholds].sort((a, b) => b - a);

  const points: CurvePoint[] = [];
  let pos = 0;
  let accepted = 0;
  let agreeing = 0;
  let littleCorrect = 0;
  let bigCorrect = 0;
  for (const t of descending) {
    while (pos < n && accepts(conf[order[pos]!]!, t)) {
      const i = order[pos++]!;
      accepted++;
      agreeing += agree[i]!;
      littleCorrect += littleOk[i]!;
      bigCorrect += bigOk[i]!;
    }
    const fractionToBig = (n - accepted) / n;
    points.push({
      threshold: t,
      total: n,
      accepted,
      agreeing,
      fractionToBig,
      agreement: accepted === 0 ? 1 : agreeing / accepted,
      littleCorrectOnAccepted: labeled ? littleCorrect : null,
      bigCorrectOnAccepted: labeled ? bigCorrect : null,
      littleAccuracyOnAccepted: labeled && accepted > 0 ? littleCorrect / accepted : null,
      bigAccuracyOnAccepted: labeled && accepted > 0 ? bigCorrect / accepted : null,
      cascadeAccuracy: labeled ? (littleCorrect + bigCorrectTotal - bigCorrect) / n : null,
      gmacsPerImage: costs.littleGmacs + fractionToBig * costs.bigGmacs,
    });
  }
  points.reverse();
  return Object.assign(points, { missingLabels: { count: missingCount, sampleKeys: missing } });
}
