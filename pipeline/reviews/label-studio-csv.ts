/**
 * Label Studio's CSV export: a header row, then one record per annotation (label-studio-flat.ts).
 * Fields follow RFC 4180: quoted fields may hold commas, doubled quotes and line breaks.
 */
import { tasksFromFlatRecords } from './label-studio-flat.js';
import { type ParsedReviewFile, ReviewFileError } from './review-row.js';

/** The records of CSV text, each a list of fields; throws on an unterminated quote. */
export function csvRecords(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  let atFieldStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
      continue;
    }
    if (c === '"' && atFieldStart) {
      quoted = true;
      atFieldStart = false;
    } else if (c === ',') {
      record.push(field);
      field = '';
      atFieldStart = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      atFieldStart = true;
    } else {
      field += c;
      atFieldStart = false;
    }
  }
  if (quoted) throw new ReviewFileError('CSV: a quoted field is never closed');
  if (field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  // Blank lines are no records.
  return records.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** Parse a Label Studio CSV export; a record with the wrong number of fields is a warning. */
export function parseLabelStudioCsv(text: string): ParsedReviewFile {
  const [header, ...rows] = csvRecords(text.replace(/^\uFEFF/, ''));
  if (!header?.includes('id')) throw new ReviewFileError('not a Label Studio CSV export (no header with an id column)');
  const records: Array<Record<string, unknown>> = [];
  const lines: number[] = [];
  const warnings: string[] = [];
  rows.forEach((fields, i) => {
    if (fields.length !== header.length) {
      warnings.push(`record ${i + 1}: ${fields.length} fields where the header has ${header.length}`);
      return;
    }
    records.push(Object.fromEntries(header.map((h, j) => [h, fields[j]])));
    lines.push(i + 1);
  });
  const parsed = tasksFromFlatRecords(records, (i) => `record ${lines[i]}`);
  return { tasks: parsed.tasks, warnings: [...warnings, ...parsed.warnings] };
}
