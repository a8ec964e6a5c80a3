/**
 * `cascade frontier`: which single models, pairs and chains of a set of models are worth
 * running, by measured machine cost against top-1 (with labels) or agreement with the dearest
 * model (without). Probabilities come from the calibration cache, timings from the timing cache
 * or a probe on this machine; the pure part is pipeline/cost/frontier.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { loadConfig, loadModelSpec } from '../../config/load-config.js';
import type { ConfidenceMetric, Prices } from '../../config/schema.js';
import { buildChainTables } from '../../pipeline/calibration/tables.js';
import {
  describeConfig,
  dominanceSentences,
  evaluateFrontier,
  type FrontierModel,
  type FrontierResult,
  type FrontierRow,
  stageCost,
} from '../../pipeline/cost/frontier.js';
import type { ModelTiming } from '../../pipeline/cost/model-timing.js';
import { lineChart } from '../../pipeline/plots/line-chart.js';
import { svgToPng } from '../../pipeline/plots/svg-to-png.js';
import { dataContext, labeledImages, scoreModel } from '../calibration-data.js';
import { spreadSample, timeModel, timingCacheFor } from '../model-timings.js';

export interface FrontierOptions {
  models: string[];
  images: string;
  labels?: string;
  /** Parquet source: the column of class indices, the ground truth instead of --labels. */
  labelColumn?: string;
  /** Parquet source: its image, URL and key columns (config `sources.columns`). */
  imageColumn?: string;
  urlColumn?: string;
  keyColumn?: string;
  /** Guaranteed rule (default): agreement with each chain's last model on images kept early. */
  targetAgreement?: number;
  delta?: number;
  metric?: ConfidenceMetric[];
  /** Instead of the guaranteed rule: this threshold at every stage but the last (README's 0.5). */
  threshold?: number;
  calibrationFraction?: number;
  maxStages?: number;
  /** Images the timing probe decodes and runs per model. */
  probeImages?: number;
  /** Seconds a model's probe may take. */
  probeTimeout?: number;
  cache?: string | false;
  config?: string;
  out?: string;
  json?: boolean;
  markdown?: boolean;
  progress?: boolean;
  /** Machine prices; default the config's `prices`. */
  prices?: Prices;
}

/** The frontier's JSON: the models with their timings, the settings, and every configuration. */
export interface FrontierReport extends FrontierResult {
  prices: Prices;
  rule: string;
  models: Array<{ name: string; path: string; gmacsPerImage: number; timing: ModelTiming }>;
}

/** Score and time the models, evaluate every configuration, print and write the frontier. */
export async function frontierCommand(o: FrontierOptions): Promise<FrontierReport> {
  if (o.models.length === 0) throw new Error('frontier: give at least one --models model');
  if (o.threshold !== undefined && o.metric && o.metric.length > 1) throw new Error('--threshold takes one --metric');
  if (o.metric?.includes('rank')) throw new Error('--metric rank needs a reference per stage; use margin, pnorm, maxprob or entropy');
  // The config supplies runtime settings (providers, threads, limits); the models come from the flags.
  const config = await loadConfig({ file: o.config, overrides: { little: o.models[0], big: o.models[o.models.length - 1] } });
  const ctx = dataContext(config, o);
  const { refs, truth } = await labeledImages(o, ctx);
  const sample = spreadSample(refs, o.probeImages ?? 32);
  const measured = [];
  for (const ref of o.models) {
    const spec = await loadModelSpec(ref);
    const scored = await scoreModel(spec.name ?? basename(spec.path), spec, refs, ctx);
    const timing = await timeModel(scored.name, spec, sample, ctx, { timeoutSeconds: o.probeTimeout ?? 300, cacheDir: timingCacheFor(o.cache) });
    measured.push({ scored, timing });
  }
  const prices = o.prices ?? config.prices;
  // Chains run cheaper → dearer, by what the models cost here, not by their MACs.
  measured.sort((a, b) => stageCost(a.timing, prices).price - stageCost(b.timing, prices).price);
  const models: FrontierModel[] = measured.map((m) => ({ name: m.scored.name, gmacsPerImage: m.scored.gmacsPerImage, timing: m.timing }));
  const names = new Set(models.map((m) => m.name));
  if (names.size !== models.length) throw new Error('frontier: two models have the same name; give each spec its own name:');
  // A fixed threshold needs no calibration half: every image is judged.
  const fraction = o.threshold !== undefined ? 1 : (o.calibrationFraction ?? 0.5);
  const tables = buildChainTables(
    refs,
    o.images,
    measured.map((m) => m.scored),
    truth,
    fraction,
  );
  const rule =
    o.threshold !== undefined
      ? ({ kind: 'fixed', metric: o.metric?.[0] ?? 'maxprob', threshold: o.threshold } as const)
      : ({ kind: 'guaranteed', targetAgreement: o.targetAgreement ?? 0.95, delta: o.delta ?? 0.05, metrics: o.metric } as const);
  const result = evaluateFrontier({ models, calibration: tables.calibration, test: tables.test, rule, prices, maxStages: o.maxStages ?? 3 });
  const ruleText =
    rule.kind === 'fixed'
      ? `${rule.metric} ≥ ${rule.threshold} at every stage but the last, on all ${result.images} images`
      : `guaranteed: agreement with each chain's last model ≥ ${rule.targetAgreement} on images kept early, δ = ${rule.delta}; thresholds certified on ${tables.calibration.length} images, figures on the other ${result.images}`;
  const report: FrontierReport = {
    ...result,
    prices,
    rule: ruleText,
    models: measured.map((m) => ({ name: m.scored.name, path: m.scored.path, gmacsPerImage: m.scored.gmacsPerImage, timing: m.timing })),
  };
  if (o.out) await writeReport(report, resolve(o.out));
  if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(o.markdown ? frontierMarkdown(report) : frontierText(report));
  return report;
}

async function writeReport(report: FrontierReport, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const svg = frontierSvg(report);
  await writeFile(join(dir, 'frontier.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(dir, 'frontier.svg'), svg);
  await writeFile(join(dir, 'frontier.png'), await svgToPng(svg));
}

const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(1)}%`);

function cells(r: FrontierRow): string[] {
  const verdict = r.verdict === 'dominated' ? `dominated by ${r.dominatedBy}` : r.verdict === 'refused' ? `refused: ${r.note}` : 'frontier';
  return [
    r.config,
    r.thresholds.length ? `${r.metric} ≥ ${r.thresholds.map((t) => t.toFixed(3)).join(', ')}` : '—',
    r.reach.map(pct).join(' / '),
    r.secondsPerImage.toFixed(4),
    r.pricePerMillion.toFixed(3),
    r.gmacsPerImage.toFixed(3),
    pct(r.quality),
    verdict,
  ];
}

const HEAD = (quality: string, currency: string) => ['config', 'thresholds', 'reach', 's/img', `${currency}/M img`, 'GMACs', quality, 'verdict'];

function footer(report: FrontierReport): string[] {
  const p = report.prices;
  return [
    `rule: ${report.rule}`,
    `cost: Σ reach × (decode + infer) per stage, each stage decoding its own input; priced at ${p.cpu} ${p.currency}/core-hour, ${p.gpu} ${p.currency}/GPU-hour (config prices)`,
    ...report.models.map(
      (m) =>
        `  ${m.name}: decode ${(1000 * m.timing.decodeSeconds).toFixed(1)} ms + infer ${(1000 * m.timing.inferSeconds).toFixed(1)} ms ${m.timing.workerClass} per image (${m.timing.provider}, ${m.timing.numerics}, ${m.timing.cpu}, batch ${m.timing.batchSize}, ${m.timing.images} images)`,
    ),
    ...dominanceSentences(report),
  ];
}

/** The frontier as an aligned text table with the rule, the timings and why each dominated configuration loses. */
export function frontierText(report: FrontierReport): string {
  const head = HEAD(report.quality, report.prices.currency);
  const body = report.rows.map(cells);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const table = [head, ...body].map((c) =>
    c
      .map((x, i) => x.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  return `${[...table, '', ...footer(report)].join('\n')}\n`;
}

/** The frontier as Markdown (for docs/results.md). */
export function frontierMarkdown(report: FrontierReport): string {
  const head = HEAD(report.quality, report.prices.currency);
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...report.rows.map((r) => `| ${cells(r).join(' | ')} |`)];
  return `${[...lines, '', ...footer(report).map((l) => `- ${l.trim()}`)].join('\n')}\n`;
}

/** Cost against quality: every judged configuration as a point (grey when dominated), the frontier as a line. */
export function frontierSvg(report: FrontierReport): string {
  const judged = report.rows.filter((r) => r.quality !== null);
  const frontier = judged.filter((r) => r.verdict === 'frontier');
  return lineChart({
    title: `Cost/quality frontier (${report.images} images)`,
    xLabel: `${report.prices.currency} per million images (CPU ${report.prices.cpu}/core-hour, GPU ${report.prices.gpu}/hour)`,
    yLabel: `${report.quality} (%)`,
    series: [{ name: 'frontier', points: frontier.map((r) => [r.pricePerMillion, 100 * r.quality!] as const) }],
    // Only the frontier is named: labels of a dozen dominated points would hide each other (the table names them).
    markers: judged.map((r) => ({
      x: r.pricePerMillion,
      y: 100 * r.quality!,
      label: r.verdict === 'frontier' ? describeConfig(r) : '',
      color: r.verdict === 'frontier' ? '#1f77b4' : '#999',
    })),
    width: 900,
    height: 520,
  });
}
