/**
 * TinySaver's search: for each candidate little model cheaper than the big one, calibrate the
 * pair and rank candidates by the cascade's total cost C_little + p_big · C_big on the
 * calibration part; every reported quality figure comes from the held-out test part. Pure.
 */
import { type CalibrateOptions, type CalibrationOutcome, calibrate } from './calibrate.js';
import type { CalibrationEntry } from './sweep.js';

/** A candidate's probability table over the same images as the big model's. */
export interface Candidate {
  name: string;
  gmacsPerImage: number;
  calibration: readonly CalibrationEntry[];
  test: readonly CalibrationEntry[];
}

export type SaverResult =
  | { name: string; gmacsPerImage: number; status: 'ranked'; rank: number; outcome: CalibrationOutcome }
  | { name: string; gmacsPerImage: number; status: 'not-cheaper' | 'failed'; reason: string };

/** Calibrate every cheaper candidate against the big model and rank by expected GMACs per image. */
export function searchSaver(candidates: readonly Candidate[], bigGmacs: number, options: CalibrateOptions = {}): SaverResult[] {
  const ranked: Array<{ name: string; gmacsPerImage: number; outcome: CalibrationOutcome }> = [];
  const rest: SaverResult[] = [];
  for (const c of candidates) {
    if (!(c.gmacsPerImage < bigGmacs)) {
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
      ranked.push({ name: c.name, gmacsPerImage: c.gmacsPerImage, outcome });
    } catch (err) {
      rest.push({ name: c.name, gmacsPerImage: c.gmacsPerImage, status: 'failed', reason: (err as Error).message });
    }
  }
  // The ranking uses only the calibration part, so the test figures stay an honest estimate.
  ranked.sort((a, b) => a.outcome.chosen.point.gmacsPerImage - b.outcome.chosen.point.gmacsPerImage || a.name.localeCompare(b.name));
  return [...ranked.map((r, i) => ({ ...r, status: 'ranked' as const, rank: i + 1 })), ...rest];
}
