/**
 * The warm-up sample of a self-calibrating run (`--target-agreement`): which images go through
 * every stage so that the first stage's threshold can be certified from them. Chosen by a hash of
 * (seed, key) — the same images on every retry, resubmission and machine — and spread over the
 * whole source: the N keys with the smallest draws, wherever they sit in the listing.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** How many images the warm-up takes: a count, or a fraction of the listed source. */
export const WarmupSize = z.union([z.object({ images: z.number().int().positive() }).strict(), z.object({ fraction: z.number().gt(0).max(1) }).strict()]);
export type WarmupSize = z.infer<typeof WarmupSize>;

/**
 * Images the default warm-up takes for `target`: 20 / (1 − target), at least 1% of the source.
 * Certifying a disagreement rate of 1 − target at δ = 0.05 needs ln(1/δ)/(1 − target) kept images
 * even when none disagrees (60 at 95%, 300 at 99%); a real sample has some disagreement and keeps
 * only part of the warm-up, so several times that: 400 images at 95%, 2,000 at 99%.
 */
export function defaultWarmupImages(target: number, total: number): number {
  return Math.max(Math.ceil(20 / (1 - target) - 1e-9), Math.ceil(total / 100));
}

/** Parse `--warmup N` or `--warmup p%`; a value that is neither gives the reason, for a one-line usage error. */
export function parseWarmupSize(text: string): { size: WarmupSize } | { error: string } {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct) {
    const p = Number(pct[1]);
    if (p > 0 && p <= 100) return { size: { fraction: p / 100 } };
    return { error: `--warmup ${text}: a percentage must be above 0% and at most 100%` };
  }
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n >= 1 && Number.isSafeInteger(n)) return { size: { images: n } };
  }
  return { error: `--warmup ${text}: expected a number of images (e.g. 400) or a percentage of the source (e.g. 5%)` };
}

/** The warm-up size a run asks for, in images, for a source of `total` images (never more than the source). */
export function resolveWarmupImages(size: WarmupSize | undefined, target: number, total: number): number {
  const wanted = size === undefined ? defaultWarmupImages(target, total) : 'images' in size ? size.images : Math.ceil(size.fraction * total - 1e-9);
  return Math.min(total, wanted);
}

/** A key's draw in [0, 2^48): fixed by the seed (the run id) and the key. */
export function warmupDraw(seed: string, key: string): number {
  // 48 bits are exact in a double; ties between two keys are as rare as a hash collision.
  return createHash('sha256').update(`warmup\0${seed}\0${key}`).digest().readUIntBE(0, 6);
}

/** The warm-up a listing chose: the source's size, the warm-up's, and the cutoff that selects it. */
export interface WarmupChoice {
  total: number;
  images: number;
  /** A key is in the warm-up iff its draw ≤ cutoff; −1 selects none. */
  cutoff: number;
}

/**
 * Choose the warm-up over a listing: the `resolveWarmupImages` keys with the smallest draws.
 * One pass, 8 bytes a key (80 MB for ten million keys), then one sort.
 */
export async function chooseWarmup(
  keys: AsyncIterable<string> | Iterable<string>,
  seed: string,
  size: WarmupSize | undefined,
  target: number,
): Promise<WarmupChoice> {
  let draws = new Float64Array(1024);
  let total = 0;
  for await (const key of keys) {
    if (total === draws.length) {
      const grown = new Float64Array(draws.length * 2);
      grown.set(draws);
      draws = grown;
    }
    draws[total++] = warmupDraw(seed, key);
  }
  const images = resolveWarmupImages(size, target, total);
  if (images === 0) return { total, images, cutoff: -1 };
  const sorted = draws.subarray(0, total).sort();
  return { total, images, cutoff: sorted[images - 1]! };
}

/** Whether `key` is in the warm-up sample that `cutoff` (from warmupCutoff) selects. */
export function inWarmup(seed: string, key: string, cutoff: number): boolean {
  return cutoff >= 0 && warmupDraw(seed, key) <= cutoff;
}
