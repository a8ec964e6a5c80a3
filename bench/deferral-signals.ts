/**
 * Deferral signals beyond maxprob/margin/entropy, evaluated for issue 18 part 3 on cached
 * probability rows (bench/risk-splits.ts). Pure; no I/O. The p-norm max-logit won and lives in
 * routing (metric pnorm); the learned logistic rule did not and stays here for the evaluation.
 */

export { pNormMaxLogit } from '../pipeline/routing.js';

/** Sorted top-k probabilities and the normalised entropy of a row: the features of the learned deferral rule. */
export function deferralFeatures(probs: ArrayLike<number>, k = 5): number[] {
  const sorted = Array.from(probs).sort((a, b) => b - a);
  let h = 0;
  for (let i = 0; i < probs.length; i++) {
    const q = probs[i]!;
    if (q > 0) h -= q * Math.log(q);
  }
  const top = sorted.slice(0, k);
  while (top.length < k) top.push(0);
  return [...top, probs.length > 1 ? h / Math.log(probs.length) : 0];
}

/** A fitted logistic regression: P(agree | x) = σ(bias + w·x). */
export interface Logistic {
  weights: number[];
  bias: number;
}

/** Fit a logistic regression by Newton's method (IRLS) with a small ridge; deterministic. */
export function fitLogistic(x: readonly number[][], y: readonly boolean[], ridge = 1e-3, iterations = 25): Logistic {
  const d = (x[0]?.length ?? 0) + 1;
  const w = new Float64Array(d);
  for (let it = 0; it < iterations; it++) {
    const g = new Float64Array(d);
    const h = Array.from({ length: d }, () => new Float64Array(d));
    for (let i = 0; i < x.length; i++) {
      const xi = [1, ...x[i]!];
      let s = 0;
      for (let j = 0; j < d; j++) s += w[j]! * xi[j]!;
      const p = 1 / (1 + Math.exp(-s));
      const r = (y[i] ? 1 : 0) - p;
      const v = p * (1 - p);
      for (let j = 0; j < d; j++) {
        g[j]! += r * xi[j]!;
        for (let l = 0; l < d; l++) h[j]![l]! += v * xi[j]! * xi[l]!;
      }
    }
    for (let j = 0; j < d; j++) {
      g[j]! -= ridge * w[j]!;
      h[j]![j]! += ridge;
    }
    const step = solve(h, g);
    let change = 0;
    for (let j = 0; j < d; j++) {
      w[j]! += step[j]!;
      change = Math.max(change, Math.abs(step[j]!));
    }
    if (change < 1e-9) break;
  }
  return { bias: w[0]!, weights: Array.from(w.slice(1)) };
}

/** P(agree) under a fitted model: a confidence in (0, 1). */
export function logisticConfidence(m: Logistic, features: readonly number[]): number {
  let s = m.bias;
  for (let j = 0; j < m.weights.length; j++) s += m.weights[j]! * features[j]!;
  return 1 / (1 + Math.exp(-s));
}

/** Solve A x = b by Gaussian elimination with partial pivoting (A is small and positive definite). */
function solve(a: Float64Array[], b: Float64Array): Float64Array {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[piv]![c]!)) piv = r;
    [m[c], m[piv]] = [m[piv]!, m[c]!];
    const d = m[c]![c]!;
    if (d === 0) continue;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r]![c]! / d;
      for (let k = c; k <= n; k++) m[r]![k]! -= f * m[c]![k]!;
    }
  }
  return Float64Array.from(m.map((row, i) => (row[i] === 0 ? 0 : row[n]! / row[i]!)));
}
