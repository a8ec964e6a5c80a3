/**
 * The deterministic calibration/test split. An image belongs to the calibration part when the
 * SHA-256 of its name (path relative to the source) ranks in the first `fraction` of all the
 * names' hashes: independent of listing order, machine and run, and unrelated to file names'
 * meaning (ImageNet names start with the class synset, so a name-sorted split would be biased).
 */
import { createHash } from 'node:crypto';

/** Both parts of a split; `test` is empty when fraction is 1. */
export interface Split<T> {
  calibration: T[];
  test: T[];
}

/** Split `items` into a calibration part of round(n · fraction) items and a test part. */
export function splitForCalibration<T>(items: readonly T[], nameOf: (item: T) => string, fraction = 0.5): Split<T> {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`calibration fraction must be in (0, 1], got ${fraction}`);
  const ranked = items
    .map((item) => ({ item, hash: createHash('sha256').update(nameOf(item)).digest('hex') }))
    .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const cut = Math.round(ranked.length * fraction);
  // Keep each part in the caller's order so reports list images as the source does.
  const inCalibration = new Set(ranked.slice(0, cut).map((r) => r.item));
  return { calibration: items.filter((i) => inCalibration.has(i)), test: items.filter((i) => !inCalibration.has(i)) };
}
