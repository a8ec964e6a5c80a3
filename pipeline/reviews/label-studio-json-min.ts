/** Label Studio's JSON-MIN export: a flat list of records, one per annotation (label-studio-flat.ts). */
import { tasksFromFlatRecords } from './label-studio-flat.js';
import { type ParsedReviewFile, ReviewFileError } from './review-row.js';

/** Parse a JSON-MIN export; a record that is not an object is a warning, a file that is not a list throws. */
export function parseLabelStudioJsonMin(text: string): ParsedReviewFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ReviewFileError(`not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(json)) throw new ReviewFileError('not a Label Studio JSON-MIN export (a list of records)');
  const records: Array<Record<string, unknown>> = [];
  const warnings: string[] = [];
  json.forEach((r, i) => {
    if (r && typeof r === 'object' && !Array.isArray(r)) records.push(r as Record<string, unknown>);
    else warnings.push(`record ${i + 1}: not an object`);
  });
  const parsed = tasksFromFlatRecords(records, (i) => `record ${i + 1}`);
  return { tasks: parsed.tasks, warnings: [...warnings, ...parsed.warnings] };
}
