/**
 * Judging a chosen operating point on images it was not chosen on, and the oracle bound.
 * Pure; no I/O.
 */
import type { ConfidenceMetric, RankReference } from '../../config/schema.js';
import { topK } from '../routing.js';
import { type CalibrationEntry, type CascadeCosts, type CurvePoint, sweepThresholds } from './sweep.js';

/** The cascade's behaviour on `table` at a fixed threshold (e.g. one calibrated elsewhere); rank ranks against `reference`. */
export function pointAt(
  table: readonly CalibrationEntry[],
  metric: ConfidenceMetric,
  threshold: number,
  costs: CascadeCosts,
  reference?: RankReference,
): CurvePoint {
  // Sweep points sit at the table's own confidences; the first at or above `threshold` keeps
  // exactly the images with confidence ≥ threshold, since no confidence lies in between.
  const curve = sweepThresholds(table, metric, costs, reference);
  const point = curve.find((p) => p.threshold >= threshold) ?? curve[curve.length - 1]!;
  return { ...point, threshold };
}

/** Top-1 accuracy of one model of the table; null when any image lacks a label. */
export function modelAccuracy(table: readonly CalibrationEntry[], which: 'little' | 'big'): number | null {
  if (table.length === 0 || table.some((e) => e.label === undefined)) return null;
  let correct = 0;
  for (const e of table) if (topK(e[which], 1)[0] === e.label) correct++;
  return correct / table.length;
}

/** What a perfect router would achieve: big sees exactly the images little gets wrong and big gets right. */
export interface OracleBound {
  fractionToBig: number;
  accuracy: number;
  gmacsPerImage: number;
  /** 1 − oracle GMACs / big-only GMACs. */
  saved: number;
}

/** The oracle saving of a little/big pair on a labeled table (TinySaver's upper bound). */
export function oracleBound(table: readonly CalibrationEntry[], costs: CascadeCosts): OracleBound {
  if (table.length === 0) throw new Error('oracleBound: the table is empty');
  let toBig = 0;
  let correct = 0;
  for (const e of table) {
    if (e.label === undefined) throw new Error(`oracleBound: image ${JSON.stringify(e.key)} has no label; the oracle needs every label`);
    const littleOk = topK(e.little, 1)[0] === e.label;
    const bigOk = topK(e.big, 1)[0] === e.label;
    if (!littleOk && bigOk) toBig++;
    if (littleOk || bigOk) correct++;
  }
  const fractionToBig = toBig / table.length;
  const gmacsPerImage = costs.littleGmacs + fractionToBig * costs.bigGmacs;
  return { fractionToBig, accuracy: correct / table.length, gmacsPerImage, saved: costs.bigGmacs > 0 ? 1 - gmacsPerImage / costs.bigGmacs : 0 };
}
