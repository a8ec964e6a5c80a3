/**
 * The merge step: read every batch's result parts from the output location and write
 * manifest.jsonl (one row per input, in input order) and summary.json. Idempotent: it only
 * reads parts and overwrites its two outputs, so running it twice is harmless.
 */
import pLimit from 'p-limit';
import { ResultPart, mergeBatchRows, partKey, summarize, type RunSummary, type SummaryInput } from './manifest.js';
import type { ObjectStore } from './object-store.js';

/** What the merge needs besides the parts: the run's description and its batch count. */
export interface MergeInput extends Omit<SummaryInput, 'parts' | 'errorsByKind' | 'images' | 'finishedAt'> {
  batches: number;
}

/** Merge all parts of a finished run into manifest.jsonl and summary.json under `store`. */
export async function mergeRun(store: ObjectStore, input: MergeInput, now: () => Date = () => new Date()): Promise<RunSummary> {
  const limit = pLimit(16);
  const readPart = async (batch: number, stage: number) => ResultPart.parse(JSON.parse((await store.get(partKey(batch, stage))).toString('utf8')));

  // A batch's parts form a chain: stage k wrote a part only if stage k-1 forwarded images.
  const batchParts = await Promise.all(
    Array.from({ length: input.batches }, (_, batch) =>
      limit(async () => {
        const parts = [await readPart(batch, 0)];
        while (parts[parts.length - 1]!.stats.forwarded > 0) parts.push(await readPart(batch, parts.length));
        return parts;
      }),
    ),
  );

  const lines: string[] = [];
  const errorsByKind: Record<string, number> = {};
  let images = 0;
  for (const parts of batchParts) {
    const rows = mergeBatchRows(parts, parts[0]!.stats.images);
    images += rows.length;
    for (const row of rows) {
      if (row.error) errorsByKind[row.error.kind] = (errorsByKind[row.error.kind] ?? 0) + 1;
      lines.push(JSON.stringify(row));
    }
  }
  await store.put('manifest.jsonl', lines.length ? `${lines.join('\n')}\n` : '');

  const summary = summarize({ ...input, parts: batchParts.flat(), errorsByKind, images, finishedAt: now() });
  await store.put('summary.json', `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}
