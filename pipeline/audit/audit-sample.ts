/**
 * Which accepted images an audit looks at. A hash of (run id, seed, key) rather than a random
 * draw, so a retried or re-delivered batch picks exactly the same images and counts stay exact.
 */
import { createHash } from 'node:crypto';

/** A number in [0, 1) fixed by the run id, the audit seed and the image key. */
export function auditDraw(runId: string, seed: string, key: string): number {
  const digest = createHash('sha256').update(`${runId}\0${seed}\0${key}`).digest();
  // 48 bits are exact in a double and far finer than any fraction a user sets.
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/** Whether the image `key` of run `runId` is audited at `fraction` (0 = none, 1 = all). */
export function isAudited(runId: string, seed: string, key: string, fraction: number): boolean {
  return auditDraw(runId, seed, key) < fraction;
}
