/**
 * TinySaver's search carried to what users pay: for each candidate little model cheaper than the
 * big one, calibrate the pair and rank candidates by the cascade's measured cost per image,
 * C_little + p_big · C_big (machine time and money from the timing probe; GMACs when no timing
 * is given), on the calibration part, each with its cost verdict against big alone. Every
 * reported quality figure comes from the held-out test part. Pure.
 */
import type { Prices } from '../../config/schema.js';
import { type CostVerdict, type MeasuredModel, pairVerdict } from '../cost/verdict.js';
import { type CalibrateOptions, type CalibrationOutcome, calibrate } from './calibrate.js';
import type { CalibrationEntry } from './sweep.js';

/** A candidate's probability table over the same images as the big model's. */
export interface Candidate {
  name: string;
  gmacsPerImage: number;
  calibration: readonly CalibrationEntry[];
  test: readonly CalibrationEntry[];
  /** Measured cost per image on this machine; with the big model's, the ranking is by measured cost. */
  cost?: MeasuredModel;
}

/** Measured costs for ranking: the big model's and the prices they are compared at. */
export interface MeasuredBig {
  cost: MeasuredModel;
  prices: Prices;
}

export type SaverResult =
  | { name: string; gmacsPerImage: number; status: 'ranked'; rank: number; outcome: CalibrationOutcome; verdict?: CostVerdict }
  | { name: string; gmacsPerImage: number; status: 'not-cheaper' | 'failed'; reason: string };

/** Calibrate every cheaper candidate against the big model and rank by expected GMACs per image. */
export function searchSaver(candidates: readonly Candidate[], bigGmacs: number, options: CalibrateOptions = {}, measured?: MeasuredBig): SaverResult[] {
  const ranked: Array<{ name: string; gmacsPerImage: number; outcome: CalibrationOutcome; verdict?: CostVerdict; price: number }> = [];
  const rest: SaverResult[] = [];
  const aloneSeconds = (m: MeasuredModel) => m.decodeSeconds + m.inferSeconds;
  for (const c of candidates) {
    if (measured && c.cost && !(aloneSeconds(c.cost) < aloneSeconds(measured.cost) || c.cost.workerClass !== measured.cost.workerClass)) {
      rest.push({
        name: c.name,
        gmacsPerImage: c.gmacsPerImage,
        status: 'not-cheaper',
        reason: `${(1000 * aloneSeconds(c.cost)).toFixed(2)} ms/img measured ≥ big ${(1000 * aloneSeconds(measured.cost)).toFixed(2)}`,
      });
      continue;
    }
    if (!measured && !(c.gmacsPerImage < bigGmacs)) {
      rest.push({
        name: c.name,
        gmacsPerImage: c.gmacsPerImage,
        status: 'not-cheaper',
        reason: `${c.gmacsPerImage.toFixed(3)} GMACs ≥ big ${bigGmacs.toFixed(3)}`,
      });
      continue;
    }
    try {
      const outcome = calibrate(c.calibration, c.test, { littleGmacs: c.gmacsPerImage, bigGmacs }, options);
      const { chosen } = outcome;
      const verdict =
        measured && c.cost
          ? pairVerdict(
              c.cost,
              measured.cost,
              { fractionToBig: chosen.point.fractionToBig, meets: true, label: `${chosen.metric} ≥ ${Number(chosen.threshold.toPrecision(4))}` },
              measured.prices,
            )
          : undefined;
      const price = verdict ? verdict.candidates.find((k) => k.kind === 'cascade')!.pricePerImage : chosen.point.gmacsPerImage;
      ranked.push({ name: c.name, gmacsPerImage: c.gmacsPerImage, outcome, ...(verdict ? { verdict } : {}), price });
    } catch (err) {
      rest.push({ name: c.name, gmacsPerImage: c.gmacsPerImage, status: 'failed', reason: (err as Error).message });
    }
  }
  // The ranking uses only the calibration part, so the test figures stay an honest estimate.
  ranked.sort((a, b) => a.price - b.price || a.name.localeCompare(b.name));
  return [...ranked.map(({ price: _price, ...r }, i) => ({ ...r, status: 'ranked' as const, rank: i + 1 })), ...rest];
}
