/**
 * `cascade export final --run <location>`: the run's final manifest, one row per image, the
 * human label where the run has a review (`label_source: human`) and the cascade's otherwise
 * (`label_source: <stage>`), as JSON Lines or as one Parquet file (`--format parquet`, or an
 * `--out` ending in .parquet), streamed a row group at a time.
 */
import { ConfigError } from '../../config/load-config.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { parquetChunks } from '../../pipeline/results/parquet-table.js';
import { FINAL_TABLE, type FinalRow, finalRow, HUMAN } from '../../pipeline/reviews/final-manifest.js';
import { readReviews } from '../../pipeline/reviews/reviews-file.js';
import { writeExport } from '../export-output.js';
import { withRun } from '../run-output.js';

/** The final manifest's file formats. */
export const FINAL_FORMATS = ['jsonl', 'parquet'] as const;
export type FinalFormat = (typeof FINAL_FORMATS)[number];

export interface ExportFinalOptions {
  run: string;
  out?: string;
  /** Absent: parquet when --out ends in .parquet, else jsonl. */
  format?: string;
}

/** The format asked for, or the one --out's name implies; Parquet is never written to a terminal's stdout by default. */
export function finalFormat(o: Pick<ExportFinalOptions, 'out' | 'format'>): FinalFormat {
  if (o.format === undefined) return o.out?.endsWith('.parquet') ? 'parquet' : 'jsonl';
  const format = FINAL_FORMATS.find((f) => f === o.format);
  if (!format) throw new ConfigError(`--format: unknown format "${o.format}" (use ${FINAL_FORMATS.join(' or ')})`);
  return format;
}

/** Write the final manifest; returns how many rows came from humans, from the cascade, and are errors nobody labelled. */
export async function exportFinalCommand(o: ExportFinalOptions): Promise<{ rows: number; human: number; cascade: number; errors: number }> {
  const format = finalFormat(o);
  return withRun(o.run, async (store, stores) => {
    const reviews = new Map((await readReviews(store)).map((r) => [r.key, r]));
    const manifest = await openManifest(store);
    const counts = { rows: 0, human: 0, cascade: 0, errors: 0 };
    const rows = (async function* (): AsyncGenerator<FinalRow> {
      for await (const row of manifest) {
        const line = finalRow(row, reviews.get(row.key));
        counts.rows++;
        if (line.label_source === HUMAN) counts.human++;
        else if (line.label_source === null) counts.errors++;
        else counts.cascade++;
        yield line;
      }
    })();
    const chunks =
      format === 'parquet'
        ? parquetChunks(FINAL_TABLE, rows)
        : (async function* () {
            for await (const line of rows) yield `${JSON.stringify(line)}\n`;
          })();
    await writeExport(o.out, chunks, stores);
    process.stderr.write(
      `exported ${counts.rows} final rows${o.out ? ` to ${o.out}` : ''}${format === 'parquet' ? ' (Parquet)' : ''}: ${counts.human} human, ${counts.cascade} cascade, ${counts.errors} errors without a label\n`,
    );
    return counts;
  });
}
