/**
 * Audit results: for images the first stage accepted and the audit sampled, the first stage's
 * answer next to the last stage's. Stored per batch as `audit/<batch>.json`, apart from the
 * result parts, so an audit can never change the manifest.
 */
import type { SampleLocator } from '../inputs/sample-locator.js';
import { z } from 'zod';
import { ImageErrorKind, type PartRow } from '../results/manifest.js';

const Answer = z.object({ stage: z.string(), label: z.number().int(), labelName: z.string().nullable(), confidence: z.number() });

/** One audited image. `big` is null (and `agree` null) when the last stage could not label it. */
export const AuditEntry = z.object({
  key: z.string(),
  pos: z.number().int().nonnegative(),
  little: Answer,
  big: Answer.nullable(),
  agree: z.boolean().nullable(),
  error: z.object({ kind: ImageErrorKind, message: z.string() }).nullable(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

/** What the last stage wrote for one batch's audit. */
export const AuditPart = z.object({
  runId: z.string(),
  batch: z.number().int().nonnegative(),
  entries: z.array(AuditEntry),
});
export type AuditPart = z.infer<typeof AuditPart>;

/** An audited image as the first stage answered it. */
export interface AuditItem {
  ref: string;
  pos: number;
  /** A sharded sample's place in its shard. */
  at?: SampleLocator;
  label: number;
  labelName: string | null;
  confidence: number;
}

/** Pair each audited image's first-stage answer with the last stage's row for it. */
export function auditEntries(items: AuditItem[], littleStage: string, bigRows: PartRow[]): AuditEntry[] {
  const byPos = new Map(bigRows.map((r) => [r.pos, r]));
  return items.map((item) => {
    const row = byPos.get(item.pos);
    if (!row) throw new Error(`audit: no row of the last stage for image ${item.pos} (${item.ref})`);
    const little = { stage: littleStage, label: item.label, labelName: item.labelName, confidence: item.confidence };
    if (row.error || row.label === null || row.confidence === null) {
      return { key: item.ref, pos: item.pos, little, big: null, agree: null, error: row.error ?? { kind: 'inference', message: 'no label' } };
    }
    const big = { stage: row.stage ?? 'big', label: row.label, labelName: row.labelName, confidence: row.confidence };
    return { key: item.ref, pos: item.pos, little, big, agree: big.label === item.label, error: null };
  });
}

/** Audited images with a last-stage answer, and how many of those agree with the first stage. */
export function countAgreement(entries: Iterable<AuditEntry>): { sampled: number; agreeing: number } {
  let sampled = 0;
  let agreeing = 0;
  for (const e of entries) {
    if (e.agree === null) continue;
    sampled += 1;
    if (e.agree) agreeing += 1;
  }
  return { sampled, agreeing };
}
