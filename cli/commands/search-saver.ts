/**
 * `cascade search-saver`: TinySaver's search for the best little model for a big one. Each
 * candidate cheaper than the big model (measured here) is calibrated on the calibration half and
 * judged on the test half; the table ranks them by the cascade's measured cost per image, with its
 * verdict against big alone (GMACs stay as a secondary figure).
 */
import { basename } from 'node:path';
import { loadConfig, loadModelSpec } from '../../config/load-config.js';
import { searchSaver, type SaverResult } from '../../pipeline/calibration/saver-search.js';
import { buildTables } from '../../pipeline/calibration/tables.js';
import { dataContext, labeledImages, ruleOptions, scoreModel } from '../calibration-data.js';
import type { CalibrationCliOptions } from '../calibration-data.js';
import type { CostVerdict } from '../../pipeline/cost/verdict.js';
import { measureModels } from '../model-timings.js';

export interface SearchSaverOptions extends CalibrationCliOptions {
  big: string;
  candidates: string[];
  markdown?: boolean;
  progress?: boolean;
  /** false: return the rows without printing them. */
  print?: boolean;
}

/** One line of the result table, every quality figure from the test half (or calibration half without one). */
export interface SaverRow {
  rank: number | null;
  candidate: string;
  gmacsPerImage: number;
  top1: number | null;
  metric: string | null;
  threshold: number | null;
  fractionToBig: number | null;
  cascadeAccuracy: number | null;
  bigAccuracy: number | null;
  agreement: number | null;
  saved: number | null;
  oracleSaved: number | null;
  /** Measured cascade cost per image on this machine, its saving against big alone, and the verdict (null without timings). */
  msPerImage: number | null;
  costSaved: number | null;
  verdict: string | null;
  note: string;
}

/** Flatten search results into table rows. */
export function saverRows(results: readonly SaverResult[], bigGmacs: number): SaverRow[] {
  return results.map((r) => {
    if (r.status !== 'ranked') {
      return {
        rank: null,
        candidate: r.name,
        gmacsPerImage: r.gmacsPerImage,
        top1: null,
        metric: null,
        threshold: null,
        fractionToBig: null,
        cascadeAccuracy: null,
        bigAccuracy: null,
        agreement: null,
        saved: null,
        oracleSaved: null,
        msPerImage: null,
        costSaved: null,
        verdict: null,
        note: `${r.status}: ${r.reason}`,
      };
    }
    const o = r.outcome;
    const part = o.test ?? { ...o.calibration, point: o.chosen.point };
    const p = part.point;
    return {
      rank: r.rank,
      candidate: r.name,
      gmacsPerImage: r.gmacsPerImage,
      top1: part.littleAccuracy,
      metric: o.chosen.metric,
      threshold: o.chosen.threshold,
      fractionToBig: p.fractionToBig,
      cascadeAccuracy: p.cascadeAccuracy,
      bigAccuracy: part.bigAccuracy,
      agreement: p.agreement,
      saved: bigGmacs > 0 ? 1 - p.gmacsPerImage / bigGmacs : 0,
      oracleSaved: part.oracle?.saved ?? null,
      ...costFigures(r.verdict),
      note: o.test
        ? `${o.chosen.rule} on ${o.calibration.images} calibration images; figures on ${o.test.images} test images`
        : `${o.chosen.rule}; no test half, figures on the calibration images`,
    };
  });
}

/** A ranked row's measured cost: the cascade's ms per image, its saving against big alone, the verdict. */
function costFigures(v: CostVerdict | undefined): Pick<SaverRow, 'msPerImage' | 'costSaved' | 'verdict'> {
  if (!v) return { msPerImage: null, costSaved: null, verdict: null };
  const cascade = v.candidates.find((c) => c.kind === 'cascade')!;
  const big = v.candidates.find((c) => c.kind === 'big-only')!;
  return {
    msPerImage: 1000 * cascade.secondsPerImage,
    costSaved: big.pricePerImage > 0 ? 1 - cascade.pricePerImage / big.pricePerImage : 0,
    verdict: v.verdict,
  };
}

const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)}%`);

/** The rows as a Markdown table (for docs/results.md). */
export function saverMarkdown(rows: readonly SaverRow[], bigName: string, bigGmacs: number): string {
  const head = [
    'rank',
    'little candidate',
    'GMACs',
    'top-1',
    'threshold',
    'to big',
    'cascade top-1',
    `${bigName} top-1`,
    'agreement',
    'MACs saved',
    'oracle saved',
    'ms/img',
    'cost saved',
    'verdict',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    lines.push(
      `| ${r.rank ?? '—'} | ${r.candidate} | ${r.gmacsPerImage.toFixed(3)} | ${pct(r.top1)} | ${r.metric ? `${r.metric} ≥ ${r.threshold!.toFixed(3)}` : r.note} | ${pct(r.fractionToBig)} | ${pct(r.cascadeAccuracy)} | ${pct(r.bigAccuracy)} | ${pct(r.agreement)} | ${pct(r.saved)} | ${pct(r.oracleSaved)} | ${r.msPerImage?.toFixed(2) ?? '—'} | ${pct(r.costSaved)} | ${r.verdict ?? '—'} |`,
    );
  }
  return `${lines.join('\n')}\n\nBig model: ${bigName}, ${bigGmacs.toFixed(3)} GMACs per image.\n`;
}

function textTable(rows: readonly SaverRow[]): string {
  const head = ['#', 'candidate', 'GMACs', 'top-1', 'threshold', 'to big', 'cascade', 'big', 'MACs saved', 'oracle', 'ms/img', 'cost saved', 'verdict'];
  const body = rows.map((r) => [
    String(r.rank ?? '-'),
    r.candidate,
    r.gmacsPerImage.toFixed(3),
    pct(r.top1),
    r.metric ? `${r.metric}≥${r.threshold!.toFixed(3)}` : r.note,
    pct(r.fractionToBig),
    pct(r.cascadeAccuracy),
    pct(r.bigAccuracy),
    pct(r.saved),
    pct(r.oracleSaved),
    r.msPerImage?.toFixed(2) ?? '—',
    pct(r.costSaved),
    r.verdict ?? '—',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body]
    .map((cells) =>
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Search the candidates and print the ranking; resolves with the rows. */
export async function searchSaverCommand(o: SearchSaverOptions): Promise<SaverRow[]> {
  if (o.candidates.length === 0) throw new Error('search-saver: give at least one --candidates model');
  // The config supplies runtime settings (providers, threads, limits); models come from the flags.
  const config = await loadConfig({ file: o.config, overrides: { little: o.candidates[0], big: o.big } });
  const fraction = o.calibrationFraction ?? 0.5;
  const ctx = dataContext(config, o);
  const { refs, truth } = await labeledImages(o, ctx);
  const bigName = config.big.name ?? basename(config.big.path);
  const big = await scoreModel(bigName, config.big, refs, ctx);

  const [bigCost] = await measureModels([{ name: bigName, spec: config.big }], refs, ctx, o);
  const candidates = [];
  for (const ref of o.candidates) {
    const spec = await loadModelSpec(ref);
    const name = spec.name ?? basename(spec.path);
    const scored = await scoreModel(name, spec, refs, ctx);
    const tables = buildTables(refs, o.images, scored, big, truth, fraction);
    const [cost] = await measureModels([{ name, spec }], refs, ctx, o);
    candidates.push({ name, gmacsPerImage: scored.gmacsPerImage, calibration: tables.calibration, test: tables.test, cost: cost! });
  }
  // Ranked by measured cost per image here; a candidate whose cascade does not beat big alone says so in its verdict.
  const results = searchSaver(candidates, big.gmacsPerImage, ruleOptions(o), { cost: bigCost!, prices: config.prices });
  const rows = saverRows(results, big.gmacsPerImage);
  if (o.print === false) return rows;
  if (o.json) process.stdout.write(`${JSON.stringify({ big: { name: bigName, gmacsPerImage: big.gmacsPerImage }, rows }, null, 2)}\n`);
  else if (o.markdown) process.stdout.write(saverMarkdown(rows, bigName, big.gmacsPerImage));
  else process.stdout.write(`big: ${bigName} (${big.gmacsPerImage.toFixed(3)} GMACs/image)\n${textTable(rows)}\n`);
  return rows;
}
