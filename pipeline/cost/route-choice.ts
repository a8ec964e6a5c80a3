/**
 * Whether a cascade is worth running at all, from measured per-image costs: a certified threshold
 * that keeps too few images makes the little model an extra cost on every image, and then the
 * big model alone is cheaper. Pure.
 */
import type { Prices, Route } from '../../config/schema.js';
import { priceOf, runCost, type StageCostTotals } from './run-cost.js';

/** The route chosen and the measured costs per image behind it. */
export interface RouteChoice {
  route: Route;
  /** Expected machine seconds per image of the cascade at the kept fraction; null when unmeasured. */
  cascadePerImage: number | null;
  /** Machine seconds per image of the last stage alone (its decode included); null when unmeasured. */
  bigOnlyPerImage: number | null;
  reason: string;
}

/**
 * The cheaper of the cascade and big alone for a two-stage run, given each stage's measured totals
 * (a self-calibrating run's warm-up: the first stage answered every image, the last stage every
 * image too) and the fraction of images the certified threshold keeps at the first stage. Stages
 * on different worker classes (little on CPU, big on GPU) are compared in money at `prices`. With
 * no measurement the cascade stands (nothing says it is worse).
 */
export function chooseRoute(totals: readonly StageCostTotals[], fractionKept: number, prices: Prices): RouteChoice {
  const first = totals[0]!;
  const last = totals[totals.length - 1]!;
  if (first.inferred === 0 || last.inferred === 0) {
    return { route: 'cascade', cascadePerImage: null, bigOnlyPerImage: null, reason: 'no measured cost in the warm-up: the certified cascade stands' };
  }
  const firstPerImage = first.seconds / first.inferred;
  // What the last stage costs per forwarded image as it ran (tensors handed on in-process cost no decode).
  const lastPerImage = last.seconds / last.inferred;
  const alone = runCost(totals, first.inferred, prices).bigOnlySeconds;
  const bigOnlyPerImage = alone === null ? lastPerImage : alone / first.inferred;
  const cascadePerImage = firstPerImage + (1 - fractionKept) * lastPerImage;
  const ms = (s: number) => `${(1000 * s).toFixed(1)} ms`;
  const money = (t: StageCostTotals, seconds: number) => priceOf(seconds, t.workerClass ?? 'cpu', prices);
  const cascadePrice = money(first, firstPerImage) + (1 - fractionKept) * money(last, lastPerImage);
  if (cascadePrice >= money(last, bigOnlyPerImage)) {
    return {
      route: 'big-only',
      cascadePerImage,
      bigOnlyPerImage,
      reason: `the cascade would cost ${ms(cascadePerImage)} per image (keeping ${(100 * fractionKept).toFixed(1)}% at the first stage) against ${ms(bigOnlyPerImage)} for the last stage alone`,
    };
  }
  return {
    route: 'cascade',
    cascadePerImage,
    bigOnlyPerImage,
    reason: `the cascade costs ${ms(cascadePerImage)} per image against ${ms(bigOnlyPerImage)} for the last stage alone`,
  };
}
