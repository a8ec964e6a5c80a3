/**
 * What a calibration hands on: the calib.json object, the curve as JSON rows and CSV, the SVG
 * plot of accuracy (or agreement) against compute, and a text report. Pure.
 */
import type { CalibrationFile, CalibrationPin } from '../../config/calibration.js';
import type { ConfidenceMetric } from '../../config/schema.js';
import { lineChart, type Marker } from '../plots/line-chart.js';
import type { CalibrationOutcome, RuleOutcome } from './calibrate.js';
import type { CurvePoint } from './sweep.js';

/** One exported curve row. */
export interface CurveRow {
  metric: ConfidenceMetric;
  threshold: number;
  fractionToBig: number;
  gmacsPerImage: number;
  saved: number;
  accepted: number;
  agreement: number;
  cascadeAccuracy: number | null;
}

/** Exported curves keep at most this many points per metric (evenly over fractionToBig). */
export const MAX_CURVE_POINTS = 2000;

const saved = (p: Pick<CurvePoint, 'gmacsPerImage'>, bigGmacs: number) => (bigGmacs > 0 ? 1 - p.gmacsPerImage / bigGmacs : 0);

/** Thin a curve to about `max` points, always keeping both ends and `keep`. */
export function thin<T extends { fractionToBig: number }>(points: readonly T[], max: number, keep?: T): T[] {
  if (points.length <= max) return [...points];
  const out: T[] = [];
  let next = -Infinity;
  const step = 1 / (max - 1);
  points.forEach((p, i) => {
    const edge = i === 0 || i === points.length - 1;
    // Points run from threshold 0 (fraction 0) up; keep one per `step` of fractionToBig.
    if (edge || p === keep || p.fractionToBig >= next) {
      out.push(p);
      next = p.fractionToBig + step;
    }
  });
  return out;
}

/** The curves of every compared metric as rows (thinned; see MAX_CURVE_POINTS). */
export function curveRows(outcome: CalibrationOutcome): CurveRow[] {
  const rows: CurveRow[] = [];
  for (const [metric, curve] of Object.entries(outcome.curves) as Array<[ConfidenceMetric, CurvePoint[]]>) {
    const keep = metric === outcome.chosen.metric ? curve.find((p) => p.threshold === outcome.chosen.threshold) : undefined;
    for (const p of thin(curve, MAX_CURVE_POINTS, keep)) {
      rows.push({
        metric,
        threshold: p.threshold,
        fractionToBig: p.fractionToBig,
        gmacsPerImage: p.gmacsPerImage,
        saved: saved(p, outcome.costs.bigGmacs),
        accepted: p.accepted,
        agreement: p.agreement,
        cascadeAccuracy: p.cascadeAccuracy,
      });
    }
  }
  return rows;
}

/** The rows as CSV with a header. */
export function curveCsv(rows: readonly CurveRow[]): string {
  const cols = ['metric', 'threshold', 'fractionToBig', 'gmacsPerImage', 'saved', 'accepted', 'agreement', 'cascadeAccuracy'] as const;
  return `${cols.join(',')}\n${rows.map((r) => cols.map((c) => (r[c] === null ? '' : String(r[c]))).join(',')).join('\n')}\n`;
}

const pct = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? '—' : `${(100 * x).toFixed(digits)}%`);

/** SVG of quality against GMACs per image for each metric, with the chosen point marked. */
export function calibrationPlot(outcome: CalibrationOutcome, title: string): string {
  const quality = (p: CurvePoint) => (outcome.labeled ? p.cascadeAccuracy! : p.agreement);
  const series = (Object.entries(outcome.curves) as Array<[ConfidenceMetric, CurvePoint[]]>).map(([metric, curve]) => ({
    name: metric,
    points: thin(curve, MAX_CURVE_POINTS).map((p) => [p.gmacsPerImage, quality(p)] as const),
  }));
  const c = outcome.chosen;
  const markers: Marker[] = [
    {
      x: c.point.gmacsPerImage,
      y: quality(c.point),
      label: `${c.rule}: ${c.metric} ≥ ${c.threshold.toFixed(3)}, ${pct(c.point.fractionToBig)} to big`,
      color: '#000',
    },
  ];
  if (outcome.test)
    markers.push({ x: outcome.test.point.gmacsPerImage, y: quality(outcome.test.point), label: 'same threshold on the test half', color: '#e377c2' });
  const oracle = outcome.calibration.oracle;
  if (oracle) markers.push({ x: oracle.gmacsPerImage, y: oracle.accuracy, label: 'oracle router', color: '#7f7f7f' });
  const hLines =
    outcome.labeled && outcome.calibration.bigAccuracy !== null
      ? [{ y: outcome.calibration.bigAccuracy, label: `big alone ${pct(outcome.calibration.bigAccuracy)}` }]
      : [];
  return lineChart({
    title,
    xLabel: 'GMACs per image (little + fraction to big × big)',
    yLabel: outcome.labeled ? 'cascade top-1 accuracy (calibration half)' : 'little/big agreement on kept images',
    series,
    markers,
    hLines,
  });
}

function operatingPoint(
  p: CurvePoint,
  part: CalibrationOutcome['calibration'],
  interval: { low: number; high: number },
  bigGmacs: number,
): CalibrationFile['expected'] {
  return {
    images: p.total,
    fractionToBig: p.fractionToBig,
    gmacsPerImage: p.gmacsPerImage,
    saved: saved(p, bigGmacs),
    agreement: p.agreement,
    agreementInterval: { low: interval.low, high: interval.high },
    accuracy: p.cascadeAccuracy,
    littleAccuracy: part.littleAccuracy,
    bigAccuracy: part.bigAccuracy,
    oracleSaved: part.oracle?.saved ?? null,
  };
}

export interface ReportModels {
  little: { name: string; path: string; pin?: CalibrationPin };
  big: { name: string; path: string; pin?: CalibrationPin };
}

/** The calib.json object for an outcome. */
export function calibrationFile(
  outcome: CalibrationOutcome,
  models: ReportModels,
  extra: {
    calibrationFraction: number;
    skippedImages: number;
    /** Samples left out because their shard gave no valid label. */
    unlabeledImages?: number;
    files: CalibrationFile['files'];
    createdAt?: Date;
    reviews?: CalibrationFile['reviews'];
  },
): CalibrationFile {
  const c = outcome.chosen;
  const { bigGmacs, littleGmacs } = outcome.costs;
  return {
    version: 1,
    createdAt: (extra.createdAt ?? new Date()).toISOString(),
    little: { ...models.little, gmacsPerImage: littleGmacs },
    big: { ...models.big, gmacsPerImage: bigGmacs },
    rule: c.rule,
    reason: c.reason,
    metric: c.metric,
    ...(c.metric === 'rank' && outcome.rankReference ? { rankReference: outcome.rankReference } : {}),
    threshold: c.threshold,
    settings: { ...outcome.options, metrics: [...outcome.options.metrics], calibrationFraction: extra.calibrationFraction },
    ...(c.guarantee ? { guarantee: c.guarantee } : {}),
    expected: operatingPoint(c.point, outcome.calibration, c.agreementInterval, bigGmacs),
    test: outcome.test ? operatingPoint(outcome.test.point, outcome.test, outcome.test.agreementInterval, bigGmacs) : null,
    skippedImages: extra.skippedImages,
    ...(extra.unlabeledImages ? { unlabeledImages: extra.unlabeledImages } : {}),
    files: extra.files,
    ...(extra.reviews ? { reviews: extra.reviews } : {}),
  };
}

function ruleLine(r: RuleOutcome, labeled: boolean, bigGmacs: number): string {
  const quality = labeled ? `accuracy ${pct(r.point.cascadeAccuracy, 2)}` : `agreement ${pct(r.point.agreement, 2)}`;
  return `${r.rule.padEnd(15)} ${r.metric.padEnd(8)} ≥ ${r.threshold.toFixed(4)}  to big ${pct(r.point.fractionToBig).padStart(6)}  ${quality}  saved ${pct(saved(r.point, bigGmacs))}`;
}

/** A human-readable report of the outcome. */
export function formatCalibration(outcome: CalibrationOutcome, file: CalibrationFile): string {
  const lines: string[] = [];
  const cal = outcome.calibration;
  lines.push(
    `calibration: ${cal.images} images${file.skippedImages ? ` (${file.skippedImages} skipped: could not be decoded)` : ''}${file.unlabeledImages ? ` (${file.unlabeledImages} left out: no valid label in their shard)` : ''}, test: ${outcome.test?.images ?? 0} images`,
  );
  if (outcome.labeled) lines.push(`  little top-1 ${pct(cal.littleAccuracy)}, big top-1 ${pct(cal.bigAccuracy)}, oracle saving ${pct(cal.oracle?.saved)}`);
  lines.push('rules (calibration half):');
  for (const r of Object.values(outcome.rules)) {
    lines.push(`  ${'rule' in r ? ruleLine(r, outcome.labeled, outcome.costs.bigGmacs) : `error: ${r.error}`}`);
  }
  lines.push(`chosen: ${file.rule}, ${file.metric} ≥ ${file.threshold} — ${file.reason}`);
  if (file.guarantee) lines.push(`  promise: ${file.guarantee.promise}`);
  else lines.push('  promise: none beyond a point estimate (about half of new samples fall below it); --rule guaranteed gives one');
  const e = file.expected;
  lines.push(
    `  expected: ${pct(e.fractionToBig)} to big, ${e.gmacsPerImage.toFixed(3)} GMACs/image (${pct(e.saved)} saved), agreement ${pct(e.agreement, 2)} ` +
      `[${pct(e.agreementInterval.low, 2)}, ${pct(e.agreementInterval.high, 2)}]${e.accuracy !== null ? `, accuracy ${pct(e.accuracy, 2)} vs big ${pct(e.bigAccuracy, 2)}` : ''}`,
  );
  const t = file.test;
  if (t) {
    lines.push(
      `  test half: ${pct(t.fractionToBig)} to big, ${pct(t.saved)} saved, agreement ${pct(t.agreement, 2)}` +
        `${t.accuracy !== null ? `, accuracy ${pct(t.accuracy, 2)} vs big ${pct(t.bigAccuracy, 2)} (little alone ${pct(t.littleAccuracy, 2)}; oracle saving ${pct(t.oracleSaved)})` : ''}`,
    );
  }
  return lines.join('\n');
}
