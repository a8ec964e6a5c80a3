/**
 * Confidence histograms per cascade stage, binned as rows stream past (memory is bins, not
 * images), and drawn as one small SVG panel per stage. Pure; no dependencies.
 */

import { escapeXml } from './line-chart.js';

/** Counts of confidences in equal bins over [0, 1], per stage. */
export interface ConfidenceHistogram {
  bins: number;
  /** `counts`: final answers of the stage; `forwarded`: images it passed on, by its confidence. */
  stages: Array<{ name: string; threshold: number | null; counts: number[]; forwarded: number[] }>;
}

/** An empty histogram for the stages of a cascade. */
export function emptyHistogram(stages: ReadonlyArray<{ name: string; threshold: number | null }>, bins = 20): ConfidenceHistogram {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`histogram bins must be a positive integer, got ${bins}`);
  return {
    bins,
    stages: stages.map((s) => ({ name: s.name, threshold: s.threshold, counts: new Array<number>(bins).fill(0), forwarded: new Array<number>(bins).fill(0) })),
  };
}

/**
 * Count one confidence for the stage called `stage` (a final answer, or with `forwarded` an
 * image the stage passed on); values outside [0, 1] go to the end bins.
 */
export function addConfidence(h: ConfidenceHistogram, stage: string, confidence: number, forwarded = false): void {
  const s = h.stages.find((x) => x.name === stage);
  if (!s) throw new Error(`histogram has no stage "${stage}" (stages: ${h.stages.map((x) => x.name).join(', ')})`);
  if (!Number.isFinite(confidence)) return;
  // Confidence 1.0 belongs to the last bin, not one past it.
  const bin = Math.min(h.bins - 1, Math.max(0, Math.floor(confidence * h.bins)));
  (forwarded ? s.forwarded : s.counts)[bin]! += 1;
}

const PANEL_H = 150;
const MARGIN = { top: 48, right: 20, bottom: 40, left: 60 };
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#d62728'];

/** Render one panel per stage (bars of counts over confidence 0..1, threshold dashed). */
export function histogramSvg(h: ConfidenceHistogram, title: string, width = 640): string {
  const plotW = width - MARGIN.left - MARGIN.right;
  const height = MARGIN.top + h.stages.length * (PANEL_H + 30) + MARGIN.bottom - 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  const binW = plotW / h.bins;
  h.stages.forEach((stage, i) => {
    const top = MARGIN.top + i * (PANEL_H + 30);
    const max = Math.max(1, ...stage.counts.map((n, b) => n + stage.forwarded[b]!));
    const total = stage.counts.reduce((a, b) => a + b, 0);
    const passed = stage.forwarded.reduce((a, b) => a + b, 0);
    const color = COLORS[i % COLORS.length]!;
    out.push(
      `<text x="${MARGIN.left}" y="${top - 6}" font-weight="bold">${escapeXml(stage.name)} (${total} final answers${passed ? `, ${passed} forwarded in grey` : ''})</text>`,
    );
    // Forwarded images stacked under the answers, in grey, so both sides of the threshold show.
    stage.forwarded.forEach((n, b) => {
      if (n === 0) return;
      const barH = (n / max) * PANEL_H;
      out.push(
        `<rect class="forwarded" data-stage="${escapeXml(stage.name)}" data-bin="${b}" data-count="${n}" x="${(MARGIN.left + b * binW + 1).toFixed(2)}" y="${(top + PANEL_H - barH).toFixed(2)}" width="${(binW - 2).toFixed(2)}" height="${barH.toFixed(2)}" fill="#bbb"/>`,
      );
    });
    out.push(`<rect x="${MARGIN.left}" y="${top}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#333"/>`);
    stage.counts.forEach((n, b) => {
      if (n === 0) return;
      const barH = (n / max) * PANEL_H;
      const below = (stage.forwarded[b]! / max) * PANEL_H;
      out.push(
        `<rect class="bar" data-stage="${escapeXml(stage.name)}" data-bin="${b}" data-count="${n}" x="${(MARGIN.left + b * binW + 1).toFixed(2)}" y="${(top + PANEL_H - below - barH).toFixed(2)}" width="${(binW - 2).toFixed(2)}" height="${barH.toFixed(2)}" fill="${color}"/>`,
      );
    });
    out.push(
      `<text x="${MARGIN.left - 6}" y="${top + 10}" text-anchor="end">${max}</text>`,
      `<text x="${MARGIN.left - 6}" y="${top + PANEL_H}" text-anchor="end">0</text>`,
    );
    if (stage.threshold !== null) {
      const x = MARGIN.left + Math.min(1, Math.max(0, stage.threshold)) * plotW;
      out.push(`<line x1="${x.toFixed(2)}" y1="${top}" x2="${x.toFixed(2)}" y2="${top + PANEL_H}" stroke="#000" stroke-dasharray="5 4"/>`);
      out.push(`<text x="${(x - 4).toFixed(2)}" y="${top + 14}" text-anchor="end">threshold ${stage.threshold}</text>`);
    }
    for (let t = 0; t <= 10; t += 2)
      out.push(`<text x="${(MARGIN.left + (t / 10) * plotW).toFixed(2)}" y="${top + PANEL_H + 14}" text-anchor="middle">${t / 10}</text>`);
  });
  out.push(
    `<text x="${MARGIN.left + plotW / 2}" y="${height - 8}" text-anchor="middle">confidence of each stage in the images it answered (colour) or forwarded (grey)</text>`,
  );
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
