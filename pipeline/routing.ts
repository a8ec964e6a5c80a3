/**
 * Confidence measures and the accept-or-forward decision of a cascade stage.
 * Pure functions over probability rows; no I/O.
 */
import { type ConfidenceMetric, RANK_NEEDS_REFERENCE, RANK_REFERENCE_SIZE, type RankReference } from '../config/schema.js';

/** Numerically stable softmax of one row of logits. */
export function softmax(logits: ArrayLike<number>): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i]! - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

/** True when a row already looks like a probability distribution (non-negative, sums to 1). */
export function looksLikeProbabilities(row: ArrayLike<number>, tolerance = 1e-3): boolean {
  let sum = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (!(v >= 0) || v > 1 + tolerance) return false;
    sum += v;
  }
  return Math.abs(sum - 1) <= tolerance;
}

/** Indices of the k largest values, largest first (ties keep the lower index first). */
export function topK(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (best.length === k && v <= row[best[k - 1]!]!) continue;
    let pos = best.length;
    while (pos > 0 && row[best[pos - 1]!]! < v) pos--;
    best.splice(pos, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

/** The p of the pnorm metric: chosen among 2, 4, 8 on the 717 photos of ../shared (docs/results.md, issue 18). */
export const PNORM_P = 8;

// Float32 softmax underflows to exactly 0 for very unlikely classes; their log is clamped here,
// which only shortens the tail of the centred logits.
const LOG_FLOOR = Math.log(1e-30);

/**
 * p-norm-normalised max-logit (Cattelan & Silva 2023), from probabilities: the centred logits
 * z − mean(z) equal log p − mean(log p), so no logits are needed. max(z_c)/‖z_c‖_p is in [0, 1].
 */
export function pNormMaxLogit(probs: ArrayLike<number>, p: number): number {
  const n = probs.length;
  if (n < 2) return 1;
  const z = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    z[i] = Math.max(LOG_FLOOR, Math.log(probs[i]!));
    mean += z[i]!;
  }
  mean /= n;
  let max = -Infinity;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const c = z[i]! - mean;
    if (c > max) max = c;
    norm += Math.abs(c) ** p;
  }
  norm **= 1 / p;
  // A flat row (all centred logits 0) is the least confident there is.
  return norm > 0 ? Math.min(1, Math.max(0, max / norm)) : 0;
}

/** top-1 − top-2 probability. */
function marginOf(probs: ArrayLike<number>): number {
  const [a, b] = topK(probs, 2);
  return probs[a!]! - (b === undefined ? 0 : probs[b]!);
}

/**
 * Ascending values, at most RANK_REFERENCE_SIZE of them: all of them when there are that few,
 * else evenly spaced order statistics (first and last included). The reference travels in
 * calib.json, configs and every run spec a worker reads from Redis, so it is capped at about
 * 40 KB of JSON; 1025 points resolve a rank to 1/1024, finer than any threshold a calibration
 * sample of a few thousand images can certify.
 */
export function orderStatistics(values: readonly number[], size = RANK_REFERENCE_SIZE): number[] {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length <= size) return sorted;
  const last = sorted.length - 1;
  return Array.from({ length: size }, (_, i) => sorted[Math.round((i * last) / (size - 1))]!);
}

/** The reference of the rank metric: the margin and pnorm distributions of a sample of probability rows. */
export function rankReference(rows: ReadonlyArray<ArrayLike<number>>): RankReference {
  return rankReferenceOf({ margin: rows.map(marginOf), pnorm: rows.map((r) => pNormMaxLogit(r, PNORM_P)) });
}

/** The reference of the rank metric from a sample's margin and pnorm (p = PNORM_P) confidences, already computed. */
export function rankReferenceOf(sample: { margin: readonly number[]; pnorm: readonly number[] }): RankReference {
  if (sample.margin.length === 0 || sample.pnorm.length === 0) throw new Error('rankReference: no images to rank against');
  return { margin: orderStatistics(sample.margin), pnorm: orderStatistics(sample.pnorm) };
}

/** x's empirical CDF value among ascending `ref`: the share of ref ≤ x. */
function ecdf(ref: readonly number[], x: number): number {
  let lo = 0;
  let hi = ref.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ref[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo / ref.length;
}

/** The rank signal from an image's margin and pnorm: the mean of their ECDF values in `ref`, in [0, 1]. */
export function rankOf(margin: number, pnorm: number, ref: RankReference): number {
  return (ecdf(ref.margin, margin) + ecdf(ref.pnorm, pnorm)) / 2;
}

/** The rank metric of a probability row: how its margin and pnorm rank among the reference's, larger = surer. */
export function rankConfidence(probs: ArrayLike<number>, ref: RankReference): number {
  return rankOf(marginOf(probs), pNormMaxLogit(probs, PNORM_P), ref);
}

/**
 * Confidence of a probability row under a metric, always in [0, 1] and larger = surer:
 * maxprob = top-1 probability; margin = top1 − top2; entropy = 1 − H(p)/ln(C);
 * pnorm = p-norm-normalised max-logit with p = PNORM_P; rank = rankConfidence against `reference`
 * (required for rank, ignored otherwise).
 */
export function confidence(probs: ArrayLike<number>, metric: ConfidenceMetric, reference?: RankReference): number {
  switch (metric) {
    case 'maxprob':
      return probs[topK(probs, 1)[0]!]!;
    case 'margin':
      return marginOf(probs);
    case 'entropy': {
      if (probs.length < 2) return 1;
      let h = 0;
      for (let i = 0; i < probs.length; i++) {
        const p = probs[i]!;
        if (p > 0) h -= p * Math.log(p);
      }
      return Math.min(1, Math.max(0, 1 - h / Math.log(probs.length)));
    }
    case 'pnorm':
      return pNormMaxLogit(probs, PNORM_P);
    case 'rank':
      if (reference === undefined) throw new Error(`confidence: ${RANK_NEEDS_REFERENCE}`);
      return rankConfidence(probs, reference);
  }
}

/** The routing decision: accepted at this stage, or forwarded to the next. */
export function accepts(conf: number, threshold: number): boolean {
  return conf >= threshold;
}

/** A classification of one image by one model. */
export interface Prediction {
  label: number;
  confidence: number;
  top5: Array<{ label: number; p: number }>;
}

/** Summarise a probability row as label, confidence under `metric` (rank: against `reference`), and top-5. */
export function predict(probs: ArrayLike<number>, metric: ConfidenceMetric, reference?: RankReference): Prediction {
  const top = topK(probs, Math.min(5, probs.length));
  return {
    label: top[0]!,
    confidence: confidence(probs, metric, reference),
    top5: top.map((label) => ({ label, p: probs[label]! })),
  };
}
