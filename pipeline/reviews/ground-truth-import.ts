/**
 * SageMaker Ground Truth output manifests (image classification), as review files: one JSON line
 * per image with `source-ref`, the label attribute (the class index) and `<attribute>-metadata`
 * (class-name, human-annotated, creation-date, …). A line whose metadata says
 * `human-annotated: no` is a machine label (an auto-labelled one, or `cascade export
 * ground-truth` itself): never a review.
 */
import type { ParsedReviewFile, ParsedTask } from './review-row.js';
import { ReviewFileError } from './review-row.js';

/** The label attribute of a line: the key X with a number and an `X-metadata` object beside it. */
function attributeOf(line: Record<string, unknown>): string | null {
  const found = Object.keys(line).filter((k) => k.endsWith('-metadata') && typeof line[k.slice(0, -'-metadata'.length)] === 'number');
  return found.length === 1 ? found[0]!.slice(0, -'-metadata'.length) : null;
}

/** Parse an output manifest; `attribute` is the label attribute (found on each line when not given). */
export function parseGroundTruthManifest(text: string, attribute?: string): ParsedReviewFile {
  const tasks: ParsedTask[] = [];
  const warnings: string[] = [];
  let jsonLines = 0;
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === '') return;
    const ref = `line ${i + 1}`;
    let line: unknown;
    try {
      line = JSON.parse(raw);
    } catch (err) {
      warnings.push(`${ref}: not JSON (${(err as Error).message})`);
      return;
    }
    jsonLines++;
    if (!line || typeof line !== 'object' || Array.isArray(line)) return void warnings.push(`${ref}: not a JSON object`);
    const o = line as Record<string, unknown>;
    const ref0 = o['source-ref'];
    if (typeof ref0 !== 'string' || ref0 === '') return void warnings.push(`${ref}: no source-ref`);
    const attr = attribute ?? attributeOf(o);
    const value = attr === null ? undefined : o[attr];
    if (attr === null || typeof value !== 'number' || !Number.isInteger(value) || value < 0)
      return void warnings.push(`${ref}: no class index under ${attr === null ? 'a label attribute (a number beside <attribute>-metadata)' : `"${attr}"`}`);
    const meta = (o[`${attr}-metadata`] ?? {}) as Record<string, unknown>;
    const base = { ref, key: null, image: ref0, run: null, reasons: [] };
    if (meta['human-annotated'] === 'no') {
      warnings.push(`${ref}: ${attr}-metadata says human-annotated "no": a machine label, not a review`);
      return void tasks.push({ ...base, annotations: [] });
    }
    const at = typeof meta['creation-date'] === 'string' ? meta['creation-date'] : null;
    tasks.push({
      ...base,
      annotations: [
        {
          id: null,
          annotator: typeof meta['job-name'] === 'string' ? `ground-truth:${meta['job-name']}` : null,
          choice: typeof meta['class-name'] === 'string' ? meta['class-name'] : null,
          classIndex: value,
          cancelled: false,
          at,
        },
      ],
    });
  });
  if (jsonLines === 0) throw new ReviewFileError('not a Ground Truth output manifest (no JSON lines)');
  return { tasks, warnings };
}
