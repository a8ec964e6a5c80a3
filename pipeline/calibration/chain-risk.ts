/**
 * The `guaranteed` rule for an N-stage chain: thresholds with a finite-sample promise, "with
 * probability ≥ 1 − δ, agreement with the last stage on new images from the same distribution
 * that an earlier stage keeps is ≥ target". Pure; no I/O.
 *
 * Why not certify each stage with the pair's rule in turn: stage 2 sees only the images stage 1
 * passed on, and stage 1's threshold was chosen from the same images' agreement, so stage 2's
 * test runs on a sample selected by the outcome it tests; the separate promises do not compose.
 *
 * Instead, ONE fixed-sequence test (Learn-then-Test, Angelopoulos et al. 2021) along a 1-D path
 * of chain configurations chosen without looking at agreement or labels:
 * - Path. Level q = j/n, j = 1 … n (n calibration images), strictest first. At level q every
 *   stage k but the last gets t_k(q) = the q-quantile from the top of stage k's confidences
 *   (under the metric) over ALL calibration images: the j-th largest, clamped to [0, 1]. Each
 *   t_k falls as q grows, so the set of images accepted by some stage before the last only
 *   grows. The path is a function of the non-last stages' confidences alone.
 * - Loss. An image is lost at level q when a stage before the last accepts it and that stage's
 *   top-1 differs from the last stage's top-1. m(q) images are accepted early, k(q) are lost.
 * - Test. H0(q): the early-accepted disagreement rate at level q is > α = 1 − target, with the
 *   exact p-value P(Bin(m, α) ≤ k) (the pair's `ltt` test). Levels are tested in order at the
 *   full δ' (δ / number of metrics), starting at the first level whose m could pass at all
 *   (minimumImages: a count of confidences, not of outcomes), stopping at the first failure; the
 *   certified level is the loosest one before it.
 * - Validity. If H0 holds at some level, the procedure certifies a level with a true H0 only if
 *   the test of the first true null on the path passes, which happens with probability ≤ δ'
 *   since the losses among the m images accepted early under fixed thresholds are i.i.d.
 *   Bernoulli(risk). Fixed-sequence testing needs no monotonicity: losses along the path need
 *   not fall monotonically (a stage's wrong answers may enter before another's right ones), and
 *   a non-monotone path only stops the search earlier (lost power, never lost validity). Each
 *   metric gets δ / (number of metrics), so keeping the cheapest certified metric afterwards
 *   keeps the overall 1 − δ (Bonferroni), as for the pair.
 * - The thresholds are the sample's own order statistics, as the pair's `ltt` tests its own
 *   confidences. Given stage k's j-th largest confidence, the images above it are i.i.d. draws
 *   from the distribution above that threshold, so the count stays binomial at the population
 *   risk up to the image on the threshold itself; no label or agreement enters the path, so
 *   nothing selects on the outcome. The coverage over many resamples of a fixed population is
 *   checked in test/unit/chain-risk.test.ts rather than assumed.
 * Among the metrics that certify, the one with the lowest expected GMACs per image wins.
 */
import { type ConfidenceMetric, RANK_TWO_STAGES } from '../../config/schema.js';
import { accepts, confidence, topK } from '../routing.js';
import { CalibrationRefused } from './calibrate.js';
import { type ChainEntry, type ChainOutcome, type ChainStage, checkChain, evaluateChain } from './chain.js';
import { fixedSequence, imagesNeededFor, strongest } from './risk-control.js';

/**
 * Metrics a chain's guaranteed rule compares unless told: margin and pnorm, each at δ/2. Not the
 * pair's rank: each stage would need its own reference, and chain calib files carry none.
 */
export const CHAIN_GUARANTEED_METRICS: readonly ConfidenceMetric[] = ['margin', 'pnorm'];

export interface ChainRiskOptions {
  /** Agreement with the last stage required on images accepted before it. */
  targetAgreement: number;
  /** The promise fails with probability at most delta. */
  delta: number;
  /** Metrics to compare, each at delta / their number; default CHAIN_GUARANTEED_METRICS. */
  metrics?: readonly ConfidenceMetric[];
  z?: number;
}

/** What the chain's guaranteed rule promises, for calib.json and the report. */
export interface ChainGuarantee {
  method: 'ltt';
  delta: number;
  kind: 'agreement';
  /** The requested target agreement. */
  level: number;
  /** Certified lower bound on agreement with the last stage on images accepted before it (= level). */
  bound: number;
  /** Calibration images the guarantee was computed on. */
  images: number;
  /** Of those, the images a stage before the last accepts at the certified thresholds. */
  accepted: number;
  /** The certified level of the path: each non-last stage's threshold keeps the top `quantile` of its confidences. */
  quantile: number;
  /** The promise in words. */
  promise: string;
}

/** One configuration of the path: q, and each non-last stage's threshold, the q-quantile from the top of its confidences. */
export interface PathStep {
  quantile: number;
  thresholds: number[];
}

/** One level of the path and what it does on the calibration images. */
export interface PathLevel extends PathStep {
  /** Images accepted by a stage before the last. */
  accepted: number;
  /** Of those, the images whose answer differs from the last stage's. */
  losses: number;
}

const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;

/** The path's thresholds, strictest first: level j keeps the top j/n of each non-last stage's confidences. Label-free. */
export function chainPath(stages: readonly ChainStage[], entries: readonly ChainEntry[], metric: ConfidenceMetric): PathStep[] {
  checkChain(stages, entries);
  const n = entries.length;
  const sorted = stages.slice(0, -1).map((_, k) => entries.map((e) => confidence(e.rows[k]!, metric)).sort((a, b) => b - a));
  return entries.map((_, j) => ({ quantile: (j + 1) / n, thresholds: sorted.map((s) => Math.min(1, Math.max(0, s[j]!))) }));
}

/** Every level of the path with its accepted and lost counts, in O(n · stages · log n). */
export function chainLevels(stages: readonly ChainStage[], entries: readonly ChainEntry[], metric: ConfidenceMetric): PathLevel[] {
  const path = chainPath(stages, entries, metric);
  const n = entries.length;
  const last = stages.length - 1;
  // Changes of the counts at each level; an image changes state only where a stage starts accepting it.
  const dAccepted = new Int32Array(n + 1);
  const dLosses = new Int32Array(n + 1);
  for (const e of entries) {
    const bigTop = topK(e.rows[last]!, 1)[0];
    const events: Array<{ level: number; stage: number }> = [];
    for (let k = 0; k < last; k++) {
      const c = confidence(e.rows[k]!, metric);
      // First level whose (non-increasing) threshold is ≤ c; the loosest level accepts everything at stage 0.
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (accepts(c, path[mid]!.thresholds[k]!)) hi = mid;
        else lo = mid + 1;
      }
      if (lo < n) events.push({ level: lo, stage: k });
    }
    events.sort((a, b) => a.level - b.level || a.stage - b.stage);
    // The image's answer comes from the first stage that accepts it; that stage can only move earlier as q grows.
    let exit = last;
    for (const ev of events) {
      if (ev.stage >= exit) continue;
      if (exit === last) dAccepted[ev.level]!++;
      else if (topK(e.rows[exit]!, 1)[0] !== bigTop) dLosses[ev.level]!--;
      if (topK(e.rows[ev.stage]!, 1)[0] !== bigTop) dLosses[ev.level]!++;
      exit = ev.stage;
    }
  }
  let accepted = 0;
  let losses = 0;
  return path.map((p, j) => {
    accepted += dAccepted[j]!;
    losses += dLosses[j]!;
    return { ...p, accepted, losses };
  });
}

/** The chain's guaranteed rule (see the module comment); throws CalibrationRefused when no metric certifies. */
export function certifyChain(
  stages: readonly ChainStage[],
  entries: readonly ChainEntry[],
  o: ChainRiskOptions,
): ChainOutcome & { rule: 'guaranteed'; guarantee: ChainGuarantee } {
  checkChain(stages, entries);
  const { targetAgreement: target, delta } = o;
  if (!(target > 0 && target <= 1)) throw new RangeError(`target agreement must be in (0, 1], got ${target}`);
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${delta}`);
  const metrics = o.metrics ?? CHAIN_GUARANTEED_METRICS;
  if (metrics.includes('rank')) throw new Error(`certifyChain: ${RANK_TWO_STAGES}`);
  if (metrics.length === 0) throw new Error('certifyChain: no metrics to compare');
  const perMetricDelta = delta / metrics.length;
  const alpha = 1 - target;
  const n = entries.length;
  const last = stages[stages.length - 1]!.name;
  const split = metrics.length > 1 ? ` (δ split over ${metrics.length} metrics: ${metrics.join(', ')})` : '';
  const perMetric: ChainOutcome['perMetric'] = {};
  let best: { metric: ConfidenceMetric; level: PathLevel; point: ReturnType<typeof evaluateChain> } | undefined;
  let firstLevels: PathLevel[] | undefined;
  for (const metric of metrics) {
    const levels = chainLevels(stages, entries, metric);
    firstLevels ??= levels;
    const level = fixedSequence(levels, alpha, perMetricDelta);
    if (!level) continue;
    const point = evaluateChain(stages, entries, metric, level.thresholds, o.z);
    perMetric[metric] = { thresholds: level.thresholds, gmacsPerImage: point.gmacsPerImage };
    if (!best || point.gmacsPerImage < best.point.gmacsPerImage) best = { metric, level, point };
  }
  if (!best) {
    // One line, as for the pair: the first metric's figures speak for all (they share the sample size).
    const levels = firstLevels!;
    const can = strongest(target, (t) => fixedSequence(levels, 1 - t, perMetricDelta) !== null);
    const needed = imagesNeededFor(
      levels.map((l) => ({ threshold: l.quantile, accepted: l.accepted, losses: l.losses })),
      n,
      alpha,
      perMetricDelta,
    );
    const needs = Number.isFinite(needed) ? `roughly ${needed} images` : 'more images than this sample can estimate';
    const strongestText = can === null ? 'it certifies no target of 50% or more' : `the strongest it certifies is ${pct(can)}`;
    throw new CalibrationRefused(
      `guaranteed rule refused: ${n} calibration images cannot certify agreement with ${last} ≥ ${pct(target)} on images an earlier stage keeps ` +
        `at δ = ${perMetricDelta} (ltt along the chain's quantile path); ${strongestText}; ${pct(target)} needs ${needs}${split}. ` +
        'Lower --target-agreement, add calibration images, or choose a point-estimate rule (--rule label-free) knowing it holds about half the time',
    );
  }
  const { metric, level, point } = best;
  const promise = `with probability ≥ ${1 - delta}, agreement with ${last} on new images from the same distribution that an earlier stage keeps is ≥ ${pct(target, 2)}`;
  return {
    metric,
    rule: 'guaranteed',
    thresholds: level.thresholds,
    reasons: stages
      .slice(0, -1)
      .map(
        (s, k) => `${s.name}: ${metric} ≥ ${level.thresholds[k]!.toFixed(4)}, the top ${pct(level.quantile, 2)} of its confidences on the calibration images`,
      ),
    point,
    perMetric,
    guarantee: {
      method: 'ltt',
      delta,
      kind: 'agreement',
      level: target,
      bound: target,
      images: n,
      accepted: level.accepted,
      quantile: level.quantile,
      promise,
    },
  };
}
