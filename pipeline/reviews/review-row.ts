/**
 * What `cascade import reviews` stores: one line of `reviews.jsonl` under the run's output per
 * reviewed image, and the format-independent shape every review file parser produces.
 */
import { z } from 'zod';

/** The review file formats `cascade import reviews` reads (the table is in review-formats.ts). */
export const ReviewFormatName = z.enum(['label-studio-json', 'label-studio-json-min', 'label-studio-csv', 'ground-truth']);
export type ReviewFormatName = z.infer<typeof ReviewFormatName>;

/** One reviewed image: the human's class, who gave it and when, and why the export picked the image. */
export const ReviewRow = z
  .object({
    /** The image key, as in manifest.jsonl. */
    key: z.string().min(1),
    label: z.number().int().nonnegative(),
    labelName: z.string(),
    /** The annotator whose answer was kept (the latest non-cancelled annotation); null when the file does not say. */
    reviewer: z.string().nullable(),
    /** When that annotation was last changed (ISO 8601 as the file wrote it); null when the file does not say. */
    reviewedAt: z.string().nullable(),
    /** Non-cancelled annotations of the task. */
    annotations: z.number().int().positive(),
    /** Whether those annotations named different classes. */
    annotatorsDisagree: z.boolean(),
    /** Why `cascade export review` picked the image (random, disagreements, low-confidence, errors); empty when unknown. */
    reasons: z.array(z.string()),
    /** Where the review came from: the format, the file's base name and the task in it. */
    source: z.object({ format: ReviewFormatName, file: z.string(), task: z.string() }).strict(),
  })
  .strict();
export type ReviewRow = z.infer<typeof ReviewRow>;

/** One annotation as a review file states it, before it is matched to the run's classes. */
export interface ParsedAnnotation {
  /** The annotation's id, when the file gives one. */
  id: string | null;
  annotator: string | null;
  /** The chosen class name (Label Studio), or null when the annotation chose nothing. */
  choice: string | null;
  /** The chosen class index, when the format gives one (Ground Truth). */
  classIndex: number | null;
  /** Skipped or cancelled: never a label. */
  cancelled: boolean;
  /** updated_at, else created_at (ISO 8601), when the file says. */
  at: string | null;
}

/** One task of a review file: what names its image, and its annotations. */
export interface ParsedTask {
  /** How a warning names the task: `task 12`, `line 3`. */
  ref: string;
  /** `data.key` as `cascade export review` wrote it. */
  key: string | null;
  /** The image reference (`data.image`, `source-ref`). */
  image: string | null;
  /** `data.run` as `cascade export review` wrote it. */
  run: string | null;
  /** `data.reason`, split. */
  reasons: string[];
  annotations: ParsedAnnotation[];
}

/** What a parser made of a file: its tasks, and one line per thing it could not use. */
export interface ParsedReviewFile {
  tasks: ParsedTask[];
  warnings: string[];
}

/** A review file that cannot be read at all (not JSON, not the format, empty). */
export class ReviewFileError extends Error {
  override name = 'ReviewFileError';
}
