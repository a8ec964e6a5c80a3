/**
 * Calibrating an N-stage cascade (tiny → small → … → big) on cached probabilities, one
 * threshold at a time. Stage k is compared with the LAST stage on the images that reach it,
 * under the same two-model rule as `calibrate`; the rules compose: if every stage keeps only
 * images where it agrees with big often enough (label-free), or is at least as accurate as big
 * on what it keeps (TinySaver), or loses nothing against big on what reaches it (no-loss), the
 * whole chain does too. One metric serves every stage (a run has one metric); the metric with
 * the lowest expected GMACs per image wins. Pure.
 *
 * These rules are point estimates, chosen stage by stage on the same sample; the `guaranteed`
 * rule for chains, with a finite-sample promise, is chain-risk.ts.
 */
import type { ConfidenceMetric } from '../../config/schema.js';
import { accepts, confidence, topK } from '../routing.js';
import { modelAccuracy } from './evaluate.js';
import { ALL_METRICS, type RuleName, ruleSelector } from './select.js';
import { type CalibrationEntry, sweepThresholds } from './sweep.js';
import { type WilsonInterval, wilsonInterval } from './wilson.js';

/** One image: each stage's probability row, in stage order, and optionally the truth. */
export interface ChainEntry {
  key: string;
  rows: readonly Float32Array[];
  label?: number;
}

export interface ChainStage {
  name: string;
  gmacsPerImage: number;
}

export interface ChainOptions {
  rule: RuleName;
  maxDrop?: number;
  targetAgreement?: number;
  metrics?: readonly ConfidenceMetric[];
  z?: number;
}

/** What a chain of thresholds does on a table. */
export interface ChainPoint {
  images: number;
  /** Images that reached each stage (stage 0: all). */
  reached: number[];
  /** Images each stage kept (the last keeps all that reach it). */
  kept: number[];
  gmacsPerImage: number;
  /** 1 − gmacsPerImage / last stage's GMACs. */
  saved: number;
  /** Agreement of final answers with the last stage's answer, over all images. */
  agreement: number;
  agreementInterval: WilsonInterval;
  /** Final top-1 accuracy; null without labels. */
  accuracy: number | null;
  lastAccuracy: number | null;
}

export interface ChainOutcome {
  metric: ConfidenceMetric;
  /** A point-estimate rule, or guaranteed (chain-risk.ts). */
  rule: RuleName | 'guaranteed';
  /** One per stage but the last; at most 1, since config thresholds lie in [0, 1]. */
  thresholds: number[];
  reasons: string[];
  point: ChainPoint;
  perMetric: Partial<Record<ConfidenceMetric, { thresholds: number[]; gmacsPerImage: number }>>;
}

/** Walk the images through the chain with fixed thresholds. */
export function evaluateChain(
  stages: readonly ChainStage[],
  entries: readonly ChainEntry[],
  metric: ConfidenceMetric,
  thresholds: readonly number[],
  z = 1.96,
): ChainPoint {
  checkChain(stages, entries);
  if (thresholds.length !== stages.length - 1)
    throw new RangeError(`evaluateChain: ${stages.length} stages need ${stages.length - 1} thresholds, got ${thresholds.length}`);
  const last = stages.length - 1;
  const reached = stages.map(() => 0);
  const kept = stages.map(() => 0);
  let agreeing = 0;
  let correct = 0;
  let lastCorrect = 0;
  const labeled = entries.every((e) => e.label !== undefined);
  for (const e of entries) {
    const bigTop = topK(e.rows[last]!, 1)[0];
    let stage = 0;
    for (; stage < last; stage++) {
      reached[stage]!++;
      if (accepts(confidence(e.rows[stage]!, metric), thresholds[stage]!)) break;
    }
    if (stage === last) reached[last]!++;
    kept[stage]!++;
    const answer = topK(e.rows[stage]!, 1)[0];
    if (answer === bigTop) agreeing++;
    if (labeled && answer === e.label) correct++;
    if (labeled && bigTop === e.label) lastCorrect++;
  }
  const n = entries.length;
  const gmacsPerImage = stages.reduce((sum, s, i) => sum + (reached[i]! / n) * s.gmacsPerImage, 0);
  const bigG = stages[last]!.gmacsPerImage;
  return {
    images: n,
    reached,
    kept,
    gmacsPerImage,
    saved: bigG > 0 ? 1 - gmacsPerImage / bigG : 0,
    agreement: agreeing / n,
    agreementInterval: wilsonInterval(agreeing, n, z),
    accuracy: labeled ? correct / n : null,
    lastAccuracy: labeled ? lastCorrect / n : null,
  };
}

/** Choose every stage's threshold in turn; see the module comment. */
export function calibrateChain(stages: readonly ChainStage[], entries: readonly ChainEntry[], o: ChainOptions): ChainOutcome {
  checkChain(stages, entries);
  const metrics = o.metrics ?? ALL_METRICS;
  if (metrics.length === 0) throw new Error('calibrateChain: no metrics to compare');
  let best: ChainOutcome | undefined;
  const perMetric: ChainOutcome['perMetric'] = {};
  for (const metric of metrics) {
    const { thresholds, reasons } = chainThresholds(stages, entries, metric, o);
    const point = evaluateChain(stages, entries, metric, thresholds, o.z);
    perMetric[metric] = { thresholds, gmacsPerImage: point.gmacsPerImage };
    if (!best || point.gmacsPerImage < best.point.gmacsPerImage) best = { metric, rule: o.rule, thresholds, reasons, point, perMetric };
  }
  return { ...best!, perMetric };
}

function chainThresholds(stages: readonly ChainStage[], entries: readonly ChainEntry[], metric: ConfidenceMetric, o: ChainOptions) {
  const last = stages.length - 1;
  const thresholds: number[] = [];
  const reasons: string[] = [];
  let remaining = entries;
  for (let k = 0; k < last; k++) {
    if (remaining.length === 0) {
      // No evidence about this stage: the strictest threshold keeps (almost) nothing.
      thresholds.push(1);
      reasons.push(`no calibration image reaches ${stages[k]!.name}; threshold 1 keeps only fully certain answers`);
      continue;
    }
    const table: CalibrationEntry[] = remaining.map((e) => ({
      key: e.key,
      little: e.rows[k]!,
      big: e.rows[last]!,
      ...(e.label === undefined ? {} : { label: e.label }),
    }));
    const curve = sweepThresholds(table, metric, { littleGmacs: stages[k]!.gmacsPerImage, bigGmacs: stages[last]!.gmacsPerImage });
    const s = ruleSelector(o.rule, modelAccuracy(table, 'big'), o)(curve);
    // Config thresholds lie in [0, 1]; 1 is the strictest a stage can be given.
    const t = Math.min(1, s.threshold);
    thresholds.push(t);
    reasons.push(`${stages[k]!.name}: ${s.reason}${s.threshold > 1 ? ' (threshold 1: this stage could be dropped)' : ''}`);
    remaining = remaining.filter((e) => !accepts(confidence(e.rows[k]!, metric), t));
  }
  return { thresholds, reasons };
}

/** Refuse a chain of fewer than 2 stages, an empty table, or an image without one row per stage. */
export function checkChain(stages: readonly ChainStage[], entries: readonly ChainEntry[]): void {
  if (stages.length < 2) throw new RangeError('a chain needs at least 2 stages');
  if (entries.length === 0) throw new Error('the calibration table is empty');
  for (const e of entries) {
    if (e.rows.length !== stages.length) throw new Error(`image ${JSON.stringify(e.key)} has ${e.rows.length} probability rows for ${stages.length} stages`);
  }
}
