/**
 * A run's cost in machine time and money, from what its workers measured: each result part
 * carries the seconds its stage spent on the batch (cost-meter.ts); the run sums them per stage
 * and sets them against what the big model alone would have cost on the same images. Pure.
 */
import { z } from 'zod';
import { type Prices, WorkerClass } from '../../config/schema.js';

/**
 * What one stage's job cost, measured where it ran. `seconds` is the job's share of its process's
 * clock (core-seconds on a CPU worker, GPU-seconds on a GPU worker); decodeSeconds + inferSeconds
 * split it in proportion to the wall time of fetch + decode and of inference within the job.
 */
export const PartCost = z.object({
  workerClass: WorkerClass,
  seconds: z.number().nonnegative(),
  decodeSeconds: z.number().nonnegative(),
  inferSeconds: z.number().nonnegative(),
  /** Images this job fetched and decoded itself (the rest came as tensors from the previous stage in its process). */
  decoded: z.number().int().nonnegative(),
});
export type PartCost = z.infer<typeof PartCost>;

/** Split a job's measured seconds into decode and inference by the wall time of each step. */
export function partCost(workerClass: WorkerClass, seconds: number, wall: { fetchMs: number; decodeMs: number; inferMs: number }, decoded: number): PartCost {
  const decodeWall = wall.fetchMs + wall.decodeMs;
  const total = decodeWall + wall.inferMs;
  const decodeSeconds = total > 0 ? (seconds * decodeWall) / total : 0;
  // Clamped: with no inference time the difference can round to a hair below zero.
  return { workerClass, seconds, decodeSeconds, inferSeconds: Math.max(0, seconds - decodeSeconds), decoded };
}

/** One stage's cost over the run. */
export const StageCost = z.object({
  name: z.string(),
  workerClass: WorkerClass,
  seconds: z.number().nonnegative(),
  decodeSeconds: z.number().nonnegative(),
  inferSeconds: z.number().nonnegative(),
});
export type StageCost = z.infer<typeof StageCost>;

/** summary.json `cost`: measured machine time of the run against the big model alone on the same images. */
export const RunCost = z.object({
  /** Machine seconds the stages spent (core-seconds and GPU-seconds added; see stages for each). */
  seconds: z.number().nonnegative(),
  /** What the last stage's model alone would have spent on every image the first stage inferred, at its measured per-image cost; null when no image reached it. */
  bigOnlySeconds: z.number().nonnegative().nullable(),
  /** 1 − seconds / bigOnlySeconds; null when big-only is unknown. */
  saved: z.number().nullable(),
  stages: z.array(StageCost),
  /** Money at the configured prices; absent when big-only is unknown. */
  price: z.object({ used: z.number().nonnegative(), bigOnly: z.number().nonnegative().nullable(), currency: z.string() }).optional(),
  /** Parts written without cost figures (older workers): their time is missing from `seconds`. */
  unknownParts: z.number().int().nonnegative(),
  /** How big-only was obtained: from the last stage's own decodes, or its inference plus the first stage's decode per image (the last stage took tensors handed on in-process). */
  bigOnlyBasis: z.enum(['measured', 'decode-from-first-stage', 'none']),
});
export type RunCost = z.infer<typeof RunCost>;

/** Per-stage sums of part costs, as the merge and the run tracker accumulate them. */
export interface StageCostTotals {
  name: string;
  /** Images this stage inferred (seen minus errors) in parts that carried cost. */
  inferred: number;
  seconds: number;
  decodeSeconds: number;
  inferSeconds: number;
  decoded: number;
  workerClass: WorkerClass | null;
  /** Parts of this stage without cost figures. */
  unknownParts: number;
}

/** Empty per-stage totals for `names`. */
export function emptyCostTotals(names: readonly string[]): StageCostTotals[] {
  return names.map((name) => ({ name, inferred: 0, seconds: 0, decodeSeconds: 0, inferSeconds: 0, decoded: 0, workerClass: null, unknownParts: 0 }));
}

/** Add one part's cost (or its absence) to its stage's totals. */
export function addPartCost(t: StageCostTotals, cost: PartCost | undefined, inferred: number): void {
  if (!cost) {
    if (inferred > 0) t.unknownParts += 1;
    return;
  }
  t.inferred += inferred;
  t.seconds += cost.seconds;
  t.decodeSeconds += cost.decodeSeconds;
  t.inferSeconds += cost.inferSeconds;
  t.decoded += cost.decoded;
  t.workerClass ??= cost.workerClass;
}

/** Price of `seconds` of `workerClass` machine time. */
export function priceOf(seconds: number, workerClass: WorkerClass, prices: Prices): number {
  return (seconds / 3600) * prices[workerClass];
}

/**
 * The run's cost from per-stage totals. `firstInferred` is the number of images the first stage
 * inferred: big-only is the last stage's measured cost per image times that many.
 */
export function runCost(totals: readonly StageCostTotals[], firstInferred: number, prices: Prices): RunCost {
  const seconds = totals.reduce((s, t) => s + t.seconds, 0);
  const first = totals[0]!;
  const last = totals[totals.length - 1]!;
  let bigOnlyPerImage: number | null = null;
  let basis: RunCost['bigOnlyBasis'] = 'none';
  if (last.inferred > 0) {
    // A last stage that took its tensors from the stage before it (same process, same
    // preprocessing) did not pay for decoding them; alone it would have, at the first stage's rate.
    const handedOn = last.inferred - last.decoded;
    const decodePerImage = first.decoded > 0 ? first.decodeSeconds / first.decoded : 0;
    bigOnlyPerImage = (last.seconds + (handedOn > 0 && totals.length > 1 ? handedOn * decodePerImage : 0)) / last.inferred;
    basis = handedOn > 0 && totals.length > 1 ? 'decode-from-first-stage' : 'measured';
  }
  const bigOnlySeconds = bigOnlyPerImage === null ? null : bigOnlyPerImage * firstInferred;
  const workerClassOf = (t: StageCostTotals) => t.workerClass ?? 'cpu';
  const used = totals.reduce((s, t) => s + priceOf(t.seconds, workerClassOf(t), prices), 0);
  return {
    seconds,
    bigOnlySeconds,
    saved: bigOnlySeconds ? 1 - seconds / bigOnlySeconds : null,
    stages: totals.map((t) => ({
      name: t.name,
      workerClass: workerClassOf(t),
      seconds: t.seconds,
      decodeSeconds: t.decodeSeconds,
      inferSeconds: t.inferSeconds,
    })),
    price: { used, bigOnly: bigOnlySeconds === null ? null : priceOf(bigOnlySeconds, workerClassOf(last), prices), currency: prices.currency },
    unknownParts: totals.reduce((s, t) => s + t.unknownParts, 0),
    bigOnlyBasis: basis,
  };
}
