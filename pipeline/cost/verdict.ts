/**
 * Whether a calibrated cascade is worth running, in measured machine time and money: the
 * certified cascade is set against each of its models alone, and the cheapest configuration that
 * meets the target is the verdict. The big model alone always meets an agreement target (it
 * agrees with itself) and an accuracy-drop target (it drops nothing); the little model alone
 * meets it when the certified threshold keeps every calibration image. A cascade that costs as
 * much as big alone or more is never the verdict. Pure.
 */
import type { CostCandidate, CostVerdict, MeasuredModel, Verdict } from '../../config/calibration.js';
import type { Prices } from '../../config/schema.js';
import { priceOf } from './run-cost.js';

export type { CostCandidate, CostVerdict, MeasuredModel, Verdict };

/** A model's cost per image in seconds and money. */
function alone(m: MeasuredModel, prices: Prices): { seconds: number; price: number } {
  const seconds = m.decodeSeconds + m.inferSeconds;
  return { seconds, price: priceOf(seconds, m.workerClass, prices) };
}

/** The certified cascade's operating point on the calibration images. */
export interface CascadePoint {
  /** Fraction of images the little model sends on to big. */
  fractionToBig: number;
  /** Whether the rule met the target (a guaranteed rule certified it; a point rule found a threshold). */
  meets: boolean;
  /** The threshold, for the candidate's name. */
  label: string;
}

/** The verdict for a little/big pair at a calibrated operating point. */
export function pairVerdict(little: MeasuredModel, big: MeasuredModel, point: CascadePoint, prices: Prices): CostVerdict {
  const l = alone(little, prices);
  const b = alone(big, prices);
  const f = point.fractionToBig;
  const keepsAll = point.meets && f === 0;
  const candidates: CostCandidate[] = [
    {
      config: `${little.name} → ${big.name} at ${point.label}`,
      kind: 'cascade',
      secondsPerImage: l.seconds + f * b.seconds,
      pricePerImage: l.price + f * b.price,
      meetsTarget: point.meets,
      why: point.meets ? `keeps ${(100 * (1 - f)).toFixed(1)}% of images at the first stage` : 'the rule found no threshold that meets the target',
    },
    {
      config: `${big.name} alone`,
      kind: 'big-only',
      secondsPerImage: b.seconds,
      pricePerImage: b.price,
      meetsTarget: true,
      why: 'agrees with itself, drops nothing',
    },
    {
      config: `${little.name} alone`,
      kind: 'single-model',
      secondsPerImage: l.seconds,
      pricePerImage: l.price,
      meetsTarget: keepsAll,
      why: keepsAll ? 'the certified threshold keeps every calibration image' : 'the target needs big on some images',
    },
  ];
  return choose(candidates, [little, big], prices.currency);
}

/** The cheapest candidate that meets the target; on a tie the one with fewer models (big alone before a cascade). */
export function choose(candidates: readonly CostCandidate[], models: readonly MeasuredModel[], currency: string): CostVerdict {
  const bigOnly = candidates.find((c) => c.kind === 'big-only');
  if (!bigOnly) throw new Error('a cost verdict needs the big model alone among its candidates');
  const order: Record<Verdict, number> = { 'single-model': 0, 'big-only': 1, cascade: 2 };
  const meeting = candidates.filter((c) => c.meetsTarget).sort((a, b) => a.pricePerImage - b.pricePerImage || order[a.kind] - order[b.kind]);
  const best = meeting[0]!;
  const cascade = candidates.find((c) => c.kind === 'cascade');
  const ms = (c: CostCandidate) => `${(1000 * c.secondsPerImage).toFixed(2)} ms/img`;
  let reason: string;
  if (best.kind === 'cascade') reason = `${best.config} costs ${ms(best)} against ${ms(bigOnly)} for ${bigOnly.config}`;
  else if (cascade?.meetsTarget)
    reason = `${cascade.config} would cost ${ms(cascade)}, not less than ${best.config} at ${ms(best)}: ${best.kind === 'big-only' ? 'run the big model alone' : 'run the little model alone'}`;
  else reason = `no cascade meets the target; ${best.config} does, at ${ms(best)}`;
  return {
    verdict: best.kind,
    reason,
    expectedCostSaving: bigOnly.pricePerImage > 0 ? 1 - best.pricePerImage / bigOnly.pricePerImage : 0,
    currency,
    models: [...models],
    candidates: [...candidates],
  };
}
