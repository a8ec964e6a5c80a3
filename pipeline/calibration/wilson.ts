/**
 * Wilson score interval for a binomial proportion. Used instead of the normal approximation
 * because calibration often looks at high proportions (agreement ≈ 0.95–1) on few samples,
 * where p̂ ± z·√(p̂(1−p̂)/n) overshoots 1 or collapses to zero width.
 */

/** An interval around a proportion; `estimate` is successes / n. */
export interface WilsonInterval {
  low: number;
  high: number;
  estimate: number;
}

/** Wilson score interval; n = 0 carries no information, so it is [0, 1] with estimate 0.5. */
export function wilsonInterval(successes: number, n: number, z = 1.96): WilsonInterval {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`wilsonInterval: n must be a non-negative integer, got ${n}`);
  if (!Number.isInteger(successes) || successes < 0 || successes > n) {
    throw new RangeError(`wilsonInterval: successes must be an integer in [0, ${n}], got ${successes}`);
  }
  if (!(z > 0) || !Number.isFinite(z)) throw new RangeError(`wilsonInterval: z must be a positive finite number, got ${z}`);
  if (n === 0) return { low: 0, high: 1, estimate: 0.5 };
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  // Clamp only to absorb rounding at s = 0 or s = n, where the exact bound is 0 or 1.
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half), estimate: p };
}
