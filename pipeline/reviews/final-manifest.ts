/**
 * The final manifest of a reviewed run: one row per image, the human's label where there is a
 * review (human labels win) and the cascade's otherwise, with `label_source` saying which
 * (`human` or the stage). `reviewedRow` gives the same overlay as a manifest row, for the
 * Ground Truth and imagefolder exports.
 */
import { z } from 'zod';
import type { ManifestRow } from '../results/manifest.js';
import type { ParquetTable } from '../results/parquet-table.js';
import type { ReviewRow } from './review-row.js';

/** The label source of a reviewed row. */
export const HUMAN = 'human';

/** One line of final.jsonl. */
export const FinalRow = z
  .object({
    key: z.string(),
    /** The human's class where reviewed, else the cascade's; null for an unreviewed error row. */
    label: z.number().int().nullable(),
    label_name: z.string().nullable(),
    /** `human`, or the stage whose answer was kept; null for an unreviewed error row. */
    label_source: z.string().nullable(),
    /** The cascade's answer, its stage and confidence (null for error rows). */
    model_label: z.number().int().nullable(),
    model_stage: z.string().nullable(),
    confidence: z.number().nullable(),
    /** Who reviewed the image, when it was reviewed and the file named them. */
    reviewer: z.string().nullable(),
    /** Why the cascade has no label (`kind: message`), even where a human gave one. */
    error: z.string().nullable(),
  })
  .strict();
export type FinalRow = z.infer<typeof FinalRow>;

const column = (name: keyof FinalRow, type: 'string' | 'INT32' | 'DOUBLE', required = false) => ({
  name,
  ...(type === 'string' ? { type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const } : { type }),
  repetition_type: required ? ('REQUIRED' as const) : ('OPTIONAL' as const),
});

/** final.parquet: FinalRow's fields as typed columns of the same names (label int32, confidence double, the rest strings). */
export const FINAL_TABLE: ParquetTable = {
  name: 'final manifest',
  schema: [
    { name: 'root', num_children: 9 },
    column('key', 'string', true),
    column('label', 'INT32'),
    column('label_name', 'string'),
    column('label_source', 'string'),
    column('model_label', 'INT32'),
    column('model_stage', 'string'),
    column('confidence', 'DOUBLE'),
    column('reviewer', 'string'),
    column('error', 'string'),
  ],
};

/** The final row of a manifest row and its review, if any. */
export function finalRow(row: ManifestRow, review: ReviewRow | undefined): FinalRow {
  const model = {
    model_label: row.label,
    model_stage: row.stage,
    confidence: row.confidence,
    error: row.error ? `${row.error.kind}: ${row.error.message}` : null,
  };
  if (review) return { key: row.key, label: review.label, label_name: review.labelName, label_source: HUMAN, ...model, reviewer: review.reviewer };
  const labelled = row.error === null && row.label !== null;
  return { key: row.key, label: row.label, label_name: row.labelName, label_source: labelled ? row.stage : null, ...model, reviewer: null };
}

/** A manifest row with the review's label in place of the cascade's (stage `human`, confidence 1, no error). */
export function reviewedRow(row: ManifestRow, review: ReviewRow | undefined): ManifestRow {
  if (!review) return row;
  return { ...row, label: review.label, labelName: review.labelName, confidence: 1, stage: HUMAN, error: null };
}
