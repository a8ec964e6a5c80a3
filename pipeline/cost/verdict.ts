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
import { CalibrationRefused, calibrate } from '../calibration/calibrate.js';
import type { ChainEntry, ChainPoint } from '../calibration/chain.js';

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

/**
 * A cascade of `models` whose stage k sees `reach[k]` of the images (reach[0] = 1), each stage
 * decoding its own input.
 */
export function cascadeCandidate(
  models: readonly MeasuredModel[],
  reach: readonly number[],
  point: Omit<CascadePoint, 'fractionToBig'>,
  prices: Prices,
): CostCandidate {
  let seconds = 0;
  let price = 0;
  models.forEach((m, k) => {
    const a = alone(m, prices);
    seconds += (reach[k] ?? 0) * a.seconds;
    price += (reach[k] ?? 0) * a.price;
  });
  const kept = 1 - (reach[1] ?? 0);
  return {
    config: `${models.map((m) => m.name).join(' → ')} at ${point.label}`,
    kind: 'cascade',
    secondsPerImage: seconds,
    pricePerImage: price,
    meetsTarget: point.meets,
    why: point.meets ? `keeps ${(100 * kept).toFixed(1)}% of images at the first stage` : 'the rule found no threshold that meets the target',
  };
}

/** Each model alone: the last always meets the target, an earlier one when its certified cascade kept every image there. */
export function singleCandidates(models: readonly MeasuredModel[], keepsAll: ReadonlySet<string>, prices: Prices): CostCandidate[] {
  return models.map((m, k) => {
    const a = alone(m, prices);
    const last = k === models.length - 1;
    const meets = last || keepsAll.has(m.name);
    return {
      config: `${m.name} alone`,
      kind: last ? ('big-only' as const) : ('single-model' as const),
      secondsPerImage: a.seconds,
      pricePerImage: a.price,
      meetsTarget: meets,
      why: last
        ? 'agrees with itself, drops nothing'
        : meets
          ? 'its certified threshold keeps every calibration image'
          : 'the target needs a later stage on some images',
    };
  });
}

/** The verdict for a little/big pair at a calibrated operating point. */
export function pairVerdict(little: MeasuredModel, big: MeasuredModel, point: CascadePoint, prices: Prices): CostVerdict {
  const keepsAll = new Set(point.meets && point.fractionToBig === 0 ? [little.name] : []);
  const candidates = [cascadeCandidate([little, big], [1, point.fractionToBig], point, prices), ...singleCandidates([little, big], keepsAll, prices)];
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

/**
 * The chain's cost verdict: the certified chain against each stage alone and against each pair
 * (an earlier stage → the last) certified under the pair's guaranteed rule at the same target and
 * δ on the same calibration images. A chain may lose to a pair, or to the last stage alone.
 */
export function chainVerdict(
  models: readonly MeasuredModel[],
  point: ChainPoint,
  calibration: readonly ChainEntry[],
  o: { meets: boolean; label: string; targetAgreement: number; delta: number; prices: Prices },
): CostVerdict {
  const last = models.length - 1;
  const reach = point.reached.map((r) => r / point.images);
  const candidates = [cascadeCandidate(models, reach, { meets: o.meets, label: o.label }, o.prices)];
  const keepsAll = new Set<string>();
  for (let i = 0; i < last && models.length > 2; i++) {
    const pair = calibration.map((e) => ({ key: e.key, little: e.rows[i]!, big: e.rows[last]!, ...(e.label === undefined ? {} : { label: e.label }) }));
    try {
      const c = calibrate(pair, [], { littleGmacs: 0, bigGmacs: 0 }, { rule: 'guaranteed', targetAgreement: o.targetAgreement, delta: o.delta }).chosen;
      if (c.point.fractionToBig === 0) keepsAll.add(models[i]!.name);
      candidates.push(
        cascadeCandidate(
          [models[i]!, models[last]!],
          [1, c.point.fractionToBig],
          { meets: true, label: `${c.metric} ≥ ${Number(c.threshold.toPrecision(4))}` },
          o.prices,
        ),
      );
    } catch (err) {
      if (!(err instanceof CalibrationRefused)) throw err;
      candidates.push({ ...cascadeCandidate([models[i]!, models[last]!], [1, 1], { meets: false, label: 'no certified threshold' }, o.prices) });
    }
  }
  if (o.meets && point.reached[1] === 0) keepsAll.add(models[0]!.name);
  candidates.push(...singleCandidates(models, keepsAll, o.prices));
  return choose(candidates, models, o.prices.currency);
}
