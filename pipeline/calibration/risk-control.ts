/**
 * Risk-controlled thresholds: the lowest threshold whose promise holds on NEW images from the
 * same distribution with probability ≥ 1 − δ, instead of a point estimate that holds about half
 * the time. Pure; no I/O.
 *
 * Two procedures, both on exact binomial tails (binomial.ts):
 * - 'ltt' (default): Learn-then-Test fixed-sequence testing (Angelopoulos et al. 2021). Thresholds
 *   are tested from the highest down, each at the full δ, and the search stops at the first one
 *   that fails. No δ is spent on a search, which makes it much sharper than SGR.
 * - 'sgr': Selection with Guaranteed Risk (Geifman & El-Yaniv 2017): a binary search over the
 *   thresholds with δ split evenly over its ⌈log2 L⌉ steps and a Clopper-Pearson bound at each.
 *
 * The tested thresholds are the sample's own confidences, and 'ltt' starts at the first one that
 * keeps enough images for a test to pass at all (a count that depends only on the confidences,
 * never on agreement). Both are the usual practice; the coverage over many splits is measured in
 * `npm run eval:savers` (docs/results.md) rather than assumed.
 */
import { accepts } from '../routing.js';
import { binomialCdf, clopperPearsonUpper, hypergeometricCdf } from './binomial.js';

/** One calibration image: the little stage's confidence (under the run's metric) and whether its top-1 equals the last stage's top-1. */
export interface ScoredImage {
  confidence: number;
  agrees: boolean;
}

export type Certification =
  | {
      certified: true;
      target: number;
      delta: number;
      /** Accept iff confidence >= threshold, like pipeline/routing.ts accepts(). */
      threshold: number;
      /** With prob >= 1-delta, agreement on new accepted images >= bound (and bound >= target). */
      bound: number;
      accepted: number;
      total: number;
      empiricalAgreement: number;
      fractionAccepted: number;
    }
  | {
      certified: false;
      target: number;
      delta: number;
      /** Strongest agreement target this sample certifies at delta, null if none (of 50% or more). */
      strongestCertifiable: number | null;
      /** Rough number of images the requested target would need (Infinity when nothing in the sample points to a number). */
      imagesNeeded: number;
      reason: string;
    };

/**
 * ltt and sgr promise agreement on the population of new images; ltt-batch promises the realised
 * agreement on a batch of new images that keeps as many images as the calibration sample did
 * (exact hypergeometric test over calibration + batch), so a batch's own noise is covered too.
 */
export type RiskMethod = 'ltt' | 'sgr' | 'ltt-batch';
export const RISK_METHODS: readonly RiskMethod[] = ['ltt', 'sgr', 'ltt-batch'];

export interface CertifyOptions {
  /** Default 'ltt'. */
  method?: RiskMethod;
  /** Skip the search for the strongest certifiable target when refusing (it costs ~20 more certifications). */
  explain?: boolean;
}

/** A threshold of the sample, highest first, with the counts of the images it accepts. */
interface Step {
  threshold: number;
  accepted: number;
  /** Images among the accepted that count as a loss (disagreement, or harm for the labeled rule). */
  losses: number;
}

/** Distinct confidences, highest first, with cumulative accepted and loss counts. */
function steps(conf: readonly number[], loss: readonly boolean[]): Step[] {
  const order = conf.map((_, i) => i).sort((a, b) => conf[b]! - conf[a]!);
  const out: Step[] = [];
  let accepted = 0;
  let losses = 0;
  for (let p = 0; p < order.length; p++) {
    const i = order[p]!;
    accepted++;
    if (loss[i]) losses++;
    // A threshold only exists once every image with the same confidence is in (accepts() is ≥).
    const next = order[p + 1];
    if (next !== undefined && conf[next] === conf[i]) continue;
    out.push({ threshold: conf[i]!, accepted, losses });
  }
  return out;
}

/** Smallest number of accepted images with no loss at all that could pass a test of risk ≤ alpha at delta. */
export function minimumImages(alpha: number, delta: number): number {
  if (alpha >= 1) return 1;
  if (alpha <= 0) return Number.POSITIVE_INFINITY;
  return Math.ceil(Math.log(delta) / Math.log1p(-alpha) - 1e-9);
}

function checkArgs(target: number, delta: number, who: string): void {
  if (!(target > 0 && target <= 1)) throw new RangeError(`${who}: target must be in (0, 1], got ${target}`);
  if (!(delta > 0 && delta < 1)) throw new RangeError(`${who}: delta must be in (0, 1), got ${delta}`);
}

/**
 * p-value of H0 "a batch of m new kept images has more than alpha·m losses" after k losses in m
 * calibration images: under exchangeability the calibration's share of the K = k + j losses of
 * both (j = ⌊alpha·m⌋ + 1, the fewest that break the promise) is hypergeometric.
 */
function batchPValue(k: number, m: number, alpha: number): number {
  const j = Math.floor(alpha * m + 1e-9) + 1;
  if (j > m) return 1;
  return hypergeometricCdf(k, 2 * m, k + j, m);
}

/** Smallest kept count at which a loss-free calibration sample can pass the batch test. */
function minimumBatchImages(alpha: number, delta: number): number {
  for (let m = 1; m <= 1_000_000; m *= 2) {
    if (batchPValue(0, m, alpha) <= delta) {
      let lo = Math.max(1, m / 2);
      let hi = m;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        if (batchPValue(0, mid, alpha) <= delta) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    }
  }
  return Number.POSITIVE_INFINITY;
}

/** A test of H0 "risk > alpha" on k losses among m images, and the fewest images at which it can pass at all. */
interface SequenceTest {
  start(alpha: number, delta: number): number;
  pValue(k: number, m: number, alpha: number): number;
}

/** ltt's test, about the population: the exact binomial p-value P(Bin(m, alpha) ≤ k). */
const POPULATION_TEST: SequenceTest = { start: minimumImages, pValue: (k, m, alpha) => binomialCdf(k, m, alpha) };

/** ltt-batch's test, about a batch as large as the sample (batchPValue). */
const BATCH_TEST: SequenceTest = { start: minimumBatchImages, pValue: batchPValue };

/**
 * Learn-then-Test's fixed sequence over steps ordered strictest first: each tested at the full δ,
 * from the first step whose count could pass at all; the last step before the first failure, or
 * null. Shared by the pair (thresholds, ltt and ltt-batch) and the chain (path levels, chain-risk.ts).
 */
export function fixedSequence<T extends { accepted: number; losses: number }>(
  steps: readonly T[],
  alpha: number,
  delta: number,
  test: SequenceTest = POPULATION_TEST,
): T | null {
  const start = test.start(alpha, delta);
  let best: T | null = null;
  for (const s of steps) {
    if (s.accepted < start) continue;
    if (test.pValue(s.losses, s.accepted, alpha) > delta) break;
    best = s;
  }
  return best;
}

/** The certified step and its valid risk bound, or null; `alpha` is the allowed risk (1 − target). */
function searchConditional(all: readonly Step[], alpha: number, delta: number, method: RiskMethod): { step: Step; riskBound: number } | null {
  if (method === 'ltt' || method === 'ltt-batch') {
    const best = fixedSequence(all, alpha, delta, method === 'ltt' ? POPULATION_TEST : BATCH_TEST);
    return best ? { step: best, riskBound: alpha } : null;
  }
  // SGR: largest index (most images kept) whose Clopper-Pearson bound at δ/k is ≤ alpha.
  const k = Math.max(1, Math.ceil(Math.log2(all.length)));
  const d = delta / k;
  let lo = 0;
  let hi = all.length - 1;
  let best: { step: Step; riskBound: number } | null = null;
  for (let i = 0; i < k && lo <= hi; i++) {
    const mid = Math.ceil((lo + hi) / 2);
    const s = all[mid]!;
    const bound = clopperPearsonUpper(s.losses, s.accepted, d);
    if (bound <= alpha) {
      best = { step: s, riskBound: bound };
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

/**
 * Roughly how many images a risk ≤ alpha needs at delta, extrapolated from the sample's thresholds:
 * the fewest accepted images for which the observed loss rate would pass (normal approximation,
 * or the zero-loss count), divided by the fraction that threshold accepts.
 */
export function imagesNeededFor(all: readonly Step[], total: number, alpha: number, delta: number): number {
  const z = normalQuantile(1 - delta);
  let best = Number.POSITIVE_INFINITY;
  // Thresholds accepting very few images make the extrapolation meaningless; 30 is the usual floor.
  const floor = Math.min(30, total);
  for (const s of all) {
    if (s.accepted < floor) continue;
    const rate = s.losses / s.accepted;
    if (rate >= alpha) continue;
    const needed = Math.max(minimumImages(alpha, delta), (z * z * alpha * (1 - alpha)) / (alpha - rate) ** 2);
    best = Math.min(best, Math.ceil(needed / (s.accepted / total)));
  }
  return best;
}

/** Φ⁻¹(p) by bisection on erf-free Φ (Abramowitz-Stegun 26.2.17 is enough for a rough count). */
function normalQuantile(p: number): number {
  const cdf = (x: number): number => {
    const t = 1 / (1 + 0.2316419 * Math.abs(x));
    const d = 0.3989422804014327 * Math.exp((-x * x) / 2);
    const q = d * t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
    return x >= 0 ? 1 - q : q;
  };
  let lo = -10;
  let hi = 10;
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if (cdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Largest target in [0.5, upTo) that `certifies` accepts, to 0.1 pp; null if none (lower targets are no use to anyone). Bisection. */
export function strongest(upTo: number, certifies: (target: number) => boolean): number | null {
  if (upTo <= 0.5 || !certifies(0.5)) return null;
  let lo = 0.5;
  let hi = upTo;
  while (hi - lo > 1e-4) {
    const mid = (lo + hi) / 2;
    if (certifies(mid)) lo = mid;
    else hi = mid;
  }
  return Math.floor(lo * 1000) / 1000;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** Choose the lowest threshold whose accepted images certify agreement >= target with probability >= 1 - delta (finite-sample). */
export function certifyAgreement(sample: readonly ScoredImage[], target: number, delta: number, o: CertifyOptions = {}): Certification {
  checkArgs(target, delta, 'certifyAgreement');
  const method = o.method ?? 'ltt';
  for (const s of sample) {
    if (Number.isNaN(s.confidence)) throw new RangeError('certifyAgreement: a confidence is NaN');
  }
  const total = sample.length;
  const all = steps(
    sample.map((s) => s.confidence),
    sample.map((s) => !s.agrees),
  );
  const found = total > 0 ? searchConditional(all, 1 - target, delta, method) : null;
  if (found) {
    const { step, riskBound } = found;
    return {
      certified: true,
      target,
      delta,
      threshold: step.threshold,
      bound: 1 - riskBound,
      accepted: step.accepted,
      total,
      empiricalAgreement: (step.accepted - step.losses) / step.accepted,
      fractionAccepted: step.accepted / total,
    };
  }
  const strongestCertifiable = o.explain === false || total === 0 ? null : strongest(target, (t) => searchConditional(all, 1 - t, delta, method) !== null);
  const imagesNeeded = imagesNeededFor(all, total, 1 - target, delta);
  const needs = Number.isFinite(imagesNeeded) ? `roughly ${imagesNeeded} images` : 'more images than this sample can estimate';
  const can = strongestCertifiable === null ? 'it certifies no target of 50% or more' : `the strongest it certifies is ${pct(strongestCertifiable)}`;
  return {
    certified: false,
    target,
    delta,
    strongestCertifiable,
    imagesNeeded,
    reason: `${total} calibration images cannot certify agreement ≥ ${pct(target)} at δ = ${delta} (${method}); ` + `${can}; ${pct(target)} needs ${needs}`,
  };
}

/** One labeled calibration image for the accuracy-drop rule. */
export interface LabeledImage {
  confidence: number;
  littleCorrect: boolean;
  lastCorrect: boolean;
}

export type DropCertification =
  | {
      certified: true;
      maxDrop: number;
      delta: number;
      threshold: number;
      /** With prob ≥ 1 − δ, cascade accuracy on new images ≥ the last stage's accuracy − maxDrop. */
      accepted: number;
      total: number;
      /** Accepted images where the little stage is wrong and the last right, over all images. */
      empiricalHarm: number;
      /** Measured drop (harms − gains) / total on the sample. */
      empiricalDrop: number;
      fractionAccepted: number;
    }
  | { certified: false; maxDrop: number; delta: number; smallestCertifiable: number | null; imagesNeeded: number; reason: string };

/**
 * Choose the lowest threshold at which the cascade loses at most `maxDrop` accuracy against the
 * last stage, with probability ≥ 1 − delta. The loss counted is a harm: accepted, little wrong,
 * last right, over ALL images (not only the accepted). That rate is monotone in the threshold,
 * so fixed-sequence testing from the top is exact here; gains (little right, last wrong) are not
 * credited, which keeps the bound conservative.
 */
export function certifyAccuracyDrop(sample: readonly LabeledImage[], maxDrop: number, delta: number): DropCertification {
  if (!(maxDrop >= 0 && maxDrop < 1)) throw new RangeError(`certifyAccuracyDrop: maxDrop must be in [0, 1), got ${maxDrop}`);
  if (!(delta > 0 && delta < 1)) throw new RangeError(`certifyAccuracyDrop: delta must be in (0, 1), got ${delta}`);
  const total = sample.length;
  const harm = sample.map((s) => !s.littleCorrect && s.lastCorrect);
  const all = steps(
    sample.map((s) => s.confidence),
    harm,
  );
  const search = (eps: number): Step | null => {
    let best: Step | null = null;
    if (eps <= 0 || total === 0) return null;
    for (const s of all) {
      if (binomialCdf(s.losses, total, eps) > delta) break;
      best = s;
    }
    return best;
  };
  const step = search(maxDrop);
  if (step) {
    let gains = 0;
    for (const s of sample) if (accepts(s.confidence, step.threshold) && s.littleCorrect && !s.lastCorrect) gains++;
    return {
      certified: true,
      maxDrop,
      delta,
      threshold: step.threshold,
      accepted: step.accepted,
      total,
      empiricalHarm: step.losses / total,
      empiricalDrop: (step.losses - gains) / total,
      fractionAccepted: step.accepted / total,
    };
  }
  // Smallest certifiable drop: bisection on eps (monotone: a larger eps passes every test a smaller one passes).
  let smallestCertifiable: number | null = null;
  if (total > 0 && search(0.5)) {
    let lo = 0;
    let hi = 0.5;
    while (hi - lo > 1e-4) {
      const mid = (lo + hi) / 2;
      if (search(mid)) hi = mid;
      else lo = mid;
    }
    smallestCertifiable = Math.ceil(hi * 1000) / 1000;
  }
  // Even keeping nothing needs (1 − ε)^n ≤ δ.
  const imagesNeeded = maxDrop > 0 ? minimumImages(maxDrop, delta) : Number.POSITIVE_INFINITY;
  const needs = Number.isFinite(imagesNeeded) ? `at least ${imagesNeeded} images` : 'a drop above 0 (no finite sample certifies exactly no loss)';
  const can = smallestCertifiable === null ? 'it certifies no drop' : `the smallest drop it certifies is ${pct(smallestCertifiable)}`;
  return {
    certified: false,
    maxDrop,
    delta,
    smallestCertifiable,
    imagesNeeded,
    reason: `${total} calibration images cannot certify an accuracy drop ≤ ${pct(maxDrop)} at δ = ${+delta.toPrecision(3)}; ${can}; ${pct(maxDrop)} needs ${needs}`,
  };
}
