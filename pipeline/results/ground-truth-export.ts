/**
 * A run's manifest as a SageMaker Ground Truth output manifest for image classification: one
 * JSON line per labelled image with `source-ref`, the label attribute (the class index) and
 * `<attribute>-metadata` (class-name, confidence, type, job-name, human-annotated, creation-date),
 * the shape AWS documents under "Labeling job output data". `human-annotated` is "no" for the
 * cascade's labels and "yes" for a human review's. Error rows have no label and are left out; the
 * caller counts them.
 */
import { z } from 'zod';
import type { ManifestRow } from './manifest.js';

/** Ground Truth's task type for single-label image classification. */
export const GROUND_TRUTH_TYPE = 'groundtruth/image-classification';

/**
 * A label attribute name as CreateLabelingJob accepts it: letters, digits and single or repeated
 * hyphens between them, at most 127 characters, not containing `-metadata` and not ending in
 * `-ref` (reserved for segmentation jobs).
 */
export const GroundTruthLabelAttribute = z
  .string()
  .max(127)
  .regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9])*$/, 'letters, digits and hyphens, starting and ending with a letter or digit')
  .refine((s) => !s.includes('-metadata'), 'must not contain "-metadata"')
  .refine((s) => !s.endsWith('-ref'), 'must not end in "-ref"');

/** A labeling job name as CreateLabelingJob accepts it (1 to 63 characters). */
export const GroundTruthJobName = z
  .string()
  .max(63)
  .regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9])*$/, 'letters, digits and hyphens, starting and ending with a letter or digit');

/** `<attribute>-metadata` of an automated image-classification label. */
export const GroundTruthMetadata = z
  .object({
    'class-name': z.string(),
    confidence: z.number().min(0).max(1),
    type: z.literal(GROUND_TRUTH_TYPE),
    'job-name': GroundTruthJobName,
    'human-annotated': z.enum(['yes', 'no']),
    /** As AWS writes it: UTC, microseconds, no zone suffix (2018-10-18T22:18:13.527256). */
    'creation-date': z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/),
  })
  .strict();
export type GroundTruthMetadata = z.infer<typeof GroundTruthMetadata>;

/** The schema of one output-manifest line for `attribute` (its keys depend on the attribute name). */
export function groundTruthRowSchema(attribute: string) {
  return z
    .object({
      'source-ref': z.string().min(1),
      [attribute]: z.number().int().nonnegative(),
      [`${attribute}-metadata`]: GroundTruthMetadata,
    })
    .strict();
}

export interface GroundTruthOptions {
  /** The label attribute name (a valid GroundTruthLabelAttribute). */
  labelAttribute: string;
  /** The job name written in each row's metadata (a valid GroundTruthJobName). */
  jobName: string;
  /** When the labels were made: the run's finish time. */
  creationDate: Date;
}

/** A date as Ground Truth writes `creation-date`: UTC, six fractional digits, no zone. */
export function groundTruthDate(d: Date): string {
  return `${d.toISOString().slice(0, 23)}000`;
}

/** A job name derived from a run id: characters Ground Truth refuses become hyphens. */
export function defaultJobName(runId: string): string {
  const cleaned = `cascade-${runId}`
    .replace(/[^a-zA-Z0-9-]+/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned;
}

/** One output-manifest line for a labelled row (`human`: its label is a reviewer's); null for an error row (it has no label). */
export function groundTruthRow(row: ManifestRow, o: GroundTruthOptions, human = false): Record<string, unknown> | null {
  if (row.error || row.label === null) return null;
  const metadata: GroundTruthMetadata = {
    'class-name': row.labelName ?? String(row.label),
    confidence: row.confidence ?? 0,
    type: GROUND_TRUTH_TYPE,
    'job-name': o.jobName,
    'human-annotated': human ? 'yes' : 'no',
    'creation-date': groundTruthDate(o.creationDate),
  };
  return { 'source-ref': row.key, [o.labelAttribute]: row.label, [`${o.labelAttribute}-metadata`]: metadata };
}
