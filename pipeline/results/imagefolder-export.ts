/**
 * A run's manifest as a Hugging Face `imagefolder` metadata.jsonl: one JSON line per labelled
 * image whose `file_name` is the image's path relative to the dataset root (the folder or S3
 * prefix the metadata.jsonl sits in), plus the label columns. Error rows are left out (an image
 * that could not be decoded would break `load_dataset`); rows outside the root cannot be named
 * relative to it, so the caller decides (fail, or leave them out and say how many).
 */
import path from 'node:path';
import { z } from 'zod';
import { isRemoteUrl } from '../storage/location.js';
import type { ManifestRow } from './manifest.js';

/** One metadata.jsonl line. Column names follow the `datasets` convention (snake_case). */
export const ImagefolderRow = z
  .object({
    /** Relative to the dataset root, `/`-separated, never `..`. */
    file_name: z
      .string()
      .min(1)
      .refine((s) => !s.startsWith('/') && !s.split('/').includes('..'), 'a path relative to the root, without ".."'),
    /** The class index. */
    label: z.number().int().nonnegative(),
    /** The class name from the run's label file (null when the run had none). */
    label_name: z.string().nullable(),
    confidence: z.number(),
    /** The cascade stage whose answer this is. */
    stage: z.string(),
  })
  .strict();
export type ImagefolderRow = z.infer<typeof ImagefolderRow>;

/** What happened to one manifest row. */
export type ImagefolderOutcome = { kind: 'row'; row: ImagefolderRow } | { kind: 'error' } | { kind: 'outside' };

/**
 * The dataset root as a prefix keys are compared with: an absolute local folder (resolved
 * against `cwd`) or `s3://bucket/prefix`, always ending in `/`.
 */
export function rootPrefix(root: string, cwd = process.cwd()): string {
  if (isRemoteUrl(root)) return root.endsWith('/') ? root : `${root}/`;
  const abs = path.resolve(cwd, root);
  return abs.endsWith('/') ? abs : `${abs}/`;
}

/** `key` relative to a root prefix (from rootPrefix), or null when the key is not under it. */
export function relativeFileName(key: string, prefix: string): string | null {
  if (!key.startsWith(prefix) || key.length === prefix.length) return null;
  const rel = key.slice(prefix.length);
  // Keys are normalised when listed, but an S3 key is data: one with a '..' segment is not "under" anything.
  return rel.split('/').includes('..') ? null : rel;
}

/** The metadata.jsonl line for a manifest row, or why it has none. */
export function imagefolderRow(row: ManifestRow, prefix: string): ImagefolderOutcome {
  if (row.error || row.label === null) return { kind: 'error' };
  const fileName = relativeFileName(row.key, prefix);
  if (fileName === null) return { kind: 'outside' };
  return { kind: 'row', row: { file_name: fileName, label: row.label, label_name: row.labelName, confidence: row.confidence ?? 0, stage: row.stage ?? '' } };
}
