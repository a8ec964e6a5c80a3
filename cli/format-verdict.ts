/**
 * The cost verdict of a calibration for the terminal: what each configuration costs per image
 * here, which meet the target, and the verdict with its reason.
 */
import type { CostVerdict } from '../pipeline/cost/verdict.js';
import { formatMoney } from './format-summary.js';

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The verdict block, e.g. "cost verdict: cascade, 41.0% cheaper than big alone — …" and one line per candidate. */
export function formatVerdict(v: CostVerdict): string {
  const lines = [`cost verdict: ${v.verdict}, ${pct(v.expectedCostSaving)} cheaper than big alone (measured here) — ${v.reason}`];
  for (const c of v.candidates) {
    const perMillion = formatMoney(c.pricePerImage * 1e6, v.currency);
    lines.push(
      `  ${c.config.padEnd(48)} ${(1000 * c.secondsPerImage).toFixed(2).padStart(7)} ms/img  ${perMillion.padStart(10)}/M img  ${c.meetsTarget ? 'meets the target' : 'misses it'}: ${c.why}`,
    );
  }
  for (const m of v.models)
    lines.push(
      `  timing ${m.name}: decode ${(1000 * m.decodeSeconds).toFixed(2)} ms + infer ${(1000 * m.inferSeconds).toFixed(2)} ms ${m.workerClass}/img (${m.source})`,
    );
  return lines.join('\n');
}

/** Warnings a user must not miss: a verdict other than the cascade they calibrated. */
export function verdictWarnings(v: CostVerdict): string[] {
  if (v.verdict === 'cascade') return [];
  const what = v.verdict === 'big-only' ? 'a run with this calib.json sends every image straight to the big model' : 'the little model alone meets the target';
  return [`the cascade does not pay here: ${v.reason}; ${what}`];
}
