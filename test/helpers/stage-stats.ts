/**
 * A stage's batch statistics for tests: zero everywhere but the fields a test sets.
 */
import type { StageStats } from '../../pipeline/results/manifest.js';

/** StageStats with every count and time 0, overridden by `o`. */
export function stageStats(o: Partial<StageStats> = {}): StageStats {
  return { images: 0, accepted: 0, forwarded: 0, errors: 0, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0, ...o };
}
