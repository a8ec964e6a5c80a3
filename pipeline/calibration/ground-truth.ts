/**
 * Ground-truth labels for calibration: a CSV with a header naming an image column and a class
 * index column (the assets' groundtruth.csv: `file,class_index,synset,name`), matched to image
 * refs by their path relative to the source, or by file name. Pure; the caller reads the file.
 */
import { posix } from 'node:path';

const KEY_COLUMNS = ['file', 'filename', 'key', 'path', 'image'];
const LABEL_COLUMNS = ['class_index', 'label', 'class', 'label_index', 'class_id'];

/** Split one CSV line, honouring double-quoted fields with "" escapes (RFC 4180). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === ',') {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted) throw new Error('unterminated quoted field');
  fields.push(cur);
  return fields;
}

/** Parse a ground-truth CSV into image name → class index; `source` names the file in errors. */
export function parseGroundTruth(text: string, source: string): Map<string, number> {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = splitCsvLine(lines[0] ?? '').map((h) => h.trim().toLowerCase());
  const keyCol = header.findIndex((h) => KEY_COLUMNS.includes(h));
  const labelCol = header.findIndex((h) => LABEL_COLUMNS.includes(h));
  if (keyCol < 0 || labelCol < 0) {
    throw new Error(
      `${source}: the header must name an image column (${KEY_COLUMNS.join('/')}) and a class index column ` +
        `(${LABEL_COLUMNS.join('/')}); got ${JSON.stringify(lines[0] ?? '')}`,
    );
  }
  const labels = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    let fields: string[];
    try {
      fields = splitCsvLine(line);
    } catch (err) {
      throw new Error(`${source}:${i + 1}: ${(err as Error).message}`);
    }
    const key = fields[keyCol]?.trim() ?? '';
    const raw = fields[labelCol]?.trim() ?? '';
    const label = Number(raw);
    if (key === '') throw new Error(`${source}:${i + 1}: empty image name`);
    if (raw === '' || !Number.isInteger(label) || label < 0)
      throw new Error(`${source}:${i + 1}: class index must be a non-negative integer, got ${JSON.stringify(raw)}`);
    const known = labels.get(key);
    if (known !== undefined && known !== label) throw new Error(`${source}:${i + 1}: ${JSON.stringify(key)} is labeled both ${known} and ${label}`);
    labels.set(key, label);
  }
  if (labels.size === 0) throw new Error(`${source}: no labeled rows`);
  return labels;
}

/**
 * The label of each image, or undefined: looked up by `name` (its path relative to the source,
 * '/'-separated), then by its file name when that is unambiguous in the CSV.
 */
export function matchLabels(names: readonly string[], truth: ReadonlyMap<string, number>): Array<number | undefined> {
  // A file name shared by two CSV rows with different paths cannot identify an image.
  const byBase = new Map<string, number | null>();
  for (const [key, label] of truth) {
    const base = posix.basename(key.replaceAll('\\', '/'));
    byBase.set(base, byBase.has(base) && byBase.get(base) !== label ? null : label);
  }
  return names.map((name) => {
    const direct = truth.get(name);
    if (direct !== undefined) return direct;
    const viaBase = byBase.get(posix.basename(name));
    return viaBase === null ? undefined : viaBase;
  });
}
