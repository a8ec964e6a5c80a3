/**
 * `cascade export final --run <location>`: the run's final manifest as JSON Lines, one row per
 * image, the human label where the run has a review (`label_source: human`) and the cascade's
 * otherwise (`label_source: <stage>`). Parquet is not written (no Parquet library in the project).
 */
import { openManifest } from '../../pipeline/results/review-export.js';
import { finalRow, HUMAN } from '../../pipeline/reviews/final-manifest.js';
import { readReviews } from '../../pipeline/reviews/reviews-file.js';
import { writeExport } from '../export-output.js';
import { withRun } from '../run-output.js';

export interface ExportFinalOptions {
  run: string;
  out?: string;
}

/** Write final.jsonl; returns how many rows came from humans, from the cascade, and are errors nobody labelled. */
export async function exportFinalCommand(o: ExportFinalOptions): Promise<{ rows: number; human: number; cascade: number; errors: number }> {
  return withRun(o.run, async (store, stores) => {
    const reviews = new Map((await readReviews(store)).map((r) => [r.key, r]));
    const manifest = await openManifest(store);
    const counts = { rows: 0, human: 0, cascade: 0, errors: 0 };
    await writeExport(
      o.out,
      (async function* () {
        for await (const row of manifest) {
          const line = finalRow(row, reviews.get(row.key));
          counts.rows++;
          if (line.label_source === HUMAN) counts.human++;
          else if (line.label_source === null) counts.errors++;
          else counts.cascade++;
          yield `${JSON.stringify(line)}\n`;
        }
      })(),
      stores,
    );
    process.stderr.write(
      `exported ${counts.rows} final rows${o.out ? ` to ${o.out}` : ''}: ${counts.human} human, ${counts.cascade} cascade, ${counts.errors} errors without a label\n`,
    );
    return counts;
  });
}
