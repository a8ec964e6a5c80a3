/**
 * The ground-truth class a sharded dataset carries beside each image, for calibration: a
 * WebDataset sample's `.cls` member (an integer, as webdataset writes it) or, failing that, its
 * `.json` member's `label` or `cls` field; a Parquet row's label column. A sample without one,
 * or with one that is not a non-negative integer, says so (calibration counts and leaves it out).
 * Runs never read labels: a manifest row has no field for a known label.
 */

/** A sample's class as its shard gives it, or why it gives none. */
export type ShardLabel = { class: number } | { missing: string } | { invalid: string };

/** Bytes of a `.cls` or `.json` member read at most; a bigger one is an invalid label, not read into memory. */
export const MAX_LABEL_MEMBER_BYTES = 64 * 1024;

/** A class index from a cell or member text: a non-negative integer (surrounding spaces allowed). */
export function classIndex(value: unknown, where: string): ShardLabel {
  if (value === null || value === undefined) return { missing: `${where} has no label` };
  const text = typeof value === 'bigint' || typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : null;
  const n = text === null || !/^\d+$/.test(text) ? NaN : Number(text);
  if (!Number.isSafeInteger(n)) return { invalid: `${where}: ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)} is not a class index` };
  return { class: n };
}

/** The label of a WebDataset sample from its `.cls` and `.json` members' text (undefined: no such member). */
export function webDatasetLabel(cls: string | undefined, json: string | undefined, sample: string): ShardLabel {
  if (cls !== undefined) return classIndex(cls, `${sample}.cls`);
  if (json === undefined) return { missing: `${sample} has no .cls or .json member` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return { invalid: `${sample}.json is not JSON` };
  }
  const fields = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  const value = fields.label ?? fields.cls;
  if (value === undefined) return { missing: `${sample} has no .cls member and its .json no label or cls field` };
  return classIndex(value, `${sample}.json's ${'label' in fields ? 'label' : 'cls'}`);
}

/** The class of a label, or null when it has none. */
export function labelClass(label: ShardLabel): number | null {
  return 'class' in label ? label.class : null;
}
