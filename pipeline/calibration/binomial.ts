/**
 * Exact binomial tails and Clopper-Pearson bounds, in log space so that n in the tens of
 * thousands neither overflows nor loses the tail to rounding. Pure; no I/O.
 */

// Lanczos approximation (g = 7, n = 9): relative error below 1e-15 for x > 0.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`logGamma: x must be positive, got ${x}`);
  // Reflection keeps the series accurate below 0.5.
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const y = x - 1;
  let a = LANCZOS[0]!;
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (y + i);
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

function checkCounts(k: number, n: number, who: string): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${who}: n must be a non-negative integer, got ${n}`);
  if (!Number.isInteger(k)) throw new RangeError(`${who}: k must be an integer, got ${k}`);
}

/** ln of the binomial probability mass C(n, i) p^i (1−p)^(n−i), for 0 < p < 1. */
function logPmf(i: number, n: number, logP: number, logQ: number, logNFact: number): number {
  return logNFact - logGamma(i + 1) - logGamma(n - i + 1) + i * logP + (n - i) * logQ;
}

/** P(X ≤ k) for X ~ Binomial(n, p), summed exactly term by term (O(min(k, n−k))). */
export function binomialCdf(k: number, n: number, p: number): number {
  checkCounts(k, n, 'binomialCdf');
  if (!(p >= 0 && p <= 1)) throw new RangeError(`binomialCdf: p must be in [0, 1], got ${p}`);
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (p === 0) return 1;
  if (p === 1) return 0;
  // Sum whichever tail has fewer terms; the other is its complement.
  const upper = k + 1 > n - k;
  const from = upper ? k + 1 : 0;
  const to = upper ? n : k;
  const logP = Math.log(p);
  const logQ = Math.log1p(-p);
  const logNFact = logGamma(n + 1);
  // log-sum-exp over the terms, anchored at the largest so small tails keep their digits.
  const terms: number[] = [];
  let max = -Infinity;
  for (let i = from; i <= to; i++) {
    const t = logPmf(i, n, logP, logQ, logNFact);
    terms.push(t);
    if (t > max) max = t;
  }
  let sum = 0;
  for (const t of terms) sum += Math.exp(t - max);
  const tail = Math.exp(max + Math.log(sum));
  return Math.min(1, Math.max(0, upper ? 1 - tail : tail));
}

/** Bisection on a decreasing function of p in [0, 1]: the p where f(p) crosses `level`. */
function solveDecreasing(f: (p: number) => number, level: number): number {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 200 && hi - lo > 1e-15; i++) {
    const mid = (lo + hi) / 2;
    if (f(mid) > level) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * One-sided Clopper-Pearson upper bound on a binomial proportion: with probability ≥ 1 − delta,
 * the true rate is ≤ this, having seen k events in n trials (the (1−δ) quantile of Beta(k+1, n−k)).
 */
export function clopperPearsonUpper(k: number, n: number, delta: number): number {
  checkCounts(k, n, 'clopperPearsonUpper');
  if (!(delta > 0 && delta < 1)) throw new RangeError(`clopperPearsonUpper: delta must be in (0, 1), got ${delta}`);
  if (k < 0 || k > n) throw new RangeError(`clopperPearsonUpper: k must be in [0, ${n}], got ${k}`);
  if (k === n) return 1;
  // Closed form without events; also the case where bisection would lose most digits.
  if (k === 0) return 1 - delta ** (1 / n);
  return solveDecreasing((p) => binomialCdf(k, n, p), delta);
}

/** One-sided Clopper-Pearson lower bound: with probability ≥ 1 − delta the true rate is ≥ this. */
export function clopperPearsonLower(k: number, n: number, delta: number): number {
  checkCounts(k, n, 'clopperPearsonLower');
  if (k < 0 || k > n) throw new RangeError(`clopperPearsonLower: k must be in [0, ${n}], got ${k}`);
  return 1 - clopperPearsonUpper(n - k, n, delta);
}

function logChoose(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/**
 * P(X ≤ x) for X ~ Hypergeometric(population N, K marked, n drawn): how many marked items a
 * random n of N holds. Summed term by term in log space.
 */
export function hypergeometricCdf(x: number, N: number, K: number, n: number): number {
  for (const [name, v] of [
    ['N', N],
    ['K', K],
    ['n', n],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`hypergeometricCdf: ${name} must be a non-negative integer, got ${v}`);
  }
  if (K > N || n > N) throw new RangeError(`hypergeometricCdf: K (${K}) and n (${n}) must not exceed N (${N})`);
  const lo = Math.max(0, n - (N - K));
  const hi = Math.min(n, K);
  if (x < lo) return 0;
  if (x >= hi) return 1;
  const denom = logChoose(N, n);
  let sum = 0;
  for (let i = lo; i <= x; i++) sum += Math.exp(logChoose(K, i) + logChoose(N - K, n - i) - denom);
  return Math.min(1, sum);
}
