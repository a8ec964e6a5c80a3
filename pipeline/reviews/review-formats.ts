/**
 * The review file formats `cascade import reviews` reads: one row per format, with how it is
 * recognised and which parser reads it. Adding a format is a parser file and a row here.
 */
import { parseGroundTruthManifest } from './ground-truth-import.js';
import { parseLabelStudioCsv } from './label-studio-csv.js';
import { parseLabelStudioJson } from './label-studio-json.js';
import { parseLabelStudioJsonMin } from './label-studio-json-min.js';
import type { ParsedReviewFile, ReviewFormatName } from './review-row.js';

export interface ReviewFormat {
  name: ReviewFormatName;
  /** Whether a file (its name and first non-blank character, its first JSON value when a list) is in this format. */
  matches(file: { name: string; first: string; firstItem: unknown }): boolean;
  parse(text: string, o: { labelAttribute?: string }): ParsedReviewFile;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

export const REVIEW_FORMATS: readonly ReviewFormat[] = [
  // A task with `annotations` (possibly empty) and `data`: the full JSON export.
  { name: 'label-studio-json', matches: (f) => f.first === '[' && isObject(f.firstItem) && 'data' in f.firstItem, parse: (t) => parseLabelStudioJson(t) },
  { name: 'label-studio-json-min', matches: (f) => f.first === '[', parse: (t) => parseLabelStudioJsonMin(t) },
  { name: 'ground-truth', matches: (f) => f.first === '{', parse: (t, o) => parseGroundTruthManifest(t, o.labelAttribute) },
  { name: 'label-studio-csv', matches: (f) => /\.csv$/i.test(f.name), parse: (t) => parseLabelStudioCsv(t) },
];

/** The format of a review file, or null when none fits (the caller names the file). */
export function detectReviewFormat(name: string, text: string): ReviewFormat | null {
  const first = text.replace(/^\uFEFF/, '').trimStart()[0] ?? '';
  let firstItem: unknown;
  if (first === '[') {
    try {
      firstItem = (JSON.parse(text) as unknown[])[0];
    } catch {
      // Not JSON: the format's parser says so, naming the file.
    }
  }
  return REVIEW_FORMATS.find((f) => f.matches({ name, first, firstItem })) ?? null;
}
