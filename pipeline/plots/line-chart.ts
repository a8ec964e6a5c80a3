/**
 * A dependency-free SVG line chart: a few series on linear axes with "nice" ticks, a legend,
 * and optional marked points. Used for calibration curves (accuracy vs compute). Pure.
 */

/** One line of the chart. Points need not be sorted; they are drawn in x order. */
export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
}

/** A highlighted point, e.g. the chosen operating point. */
export interface Marker {
  x: number;
  y: number;
  label: string;
  color?: string;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  markers?: readonly Marker[];
  /** Horizontal reference lines, e.g. the big model's accuracy. */
  hLines?: ReadonlyArray<{ y: number; label: string }>;
  width?: number;
  height?: number;
  /** Axis ranges; computed from the data (with a little padding) when absent. */
  xDomain?: readonly [number, number];
  yDomain?: readonly [number, number];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const MARGIN = { top: 40, right: 20, bottom: 50, left: 64 };

/** Escape text for SVG content and attributes. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Round tick positions covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError(`niceTicks: bounds must be finite, got ${lo}, ${hi}`);
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const r = raw / mag; // in [1, 10)
  const step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  // Integer multiples avoid accumulating float error (0.1 + 0.2 …).
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

function domain(values: number[], given: readonly [number, number] | undefined): [number, number] {
  if (given) return [given[0], given[1]];
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  const pad = (hi - lo) * 0.04;
  return [lo - pad, hi + pad];
}

const fmt = (v: number): string => String(Number(v.toPrecision(6)));

/** Render the chart as a standalone SVG document. */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 720;
  const height = spec.height ?? 440;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const xs = [...spec.series.flatMap((s) => s.points.map((p) => p[0])), ...(spec.markers ?? []).map((m) => m.x)];
  const ys = [...spec.series.flatMap((s) => s.points.map((p) => p[1])), ...(spec.markers ?? []).map((m) => m.y), ...(spec.hLines ?? []).map((l) => l.y)];
  const [x0, x1] = domain(xs, spec.xDomain);
  const [y0, y1] = domain(ys, spec.yDomain);
  const sx = (x: number) => MARGIN.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y: number) => MARGIN.top + plotH - ((y - y0) / (y1 - y0)) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);

  // Grid and ticks.
  for (const t of niceTicks(x0, x1)) {
    if (t < x0 || t > x1) continue;
    out.push(`<line x1="${sx(t).toFixed(1)}" y1="${MARGIN.top}" x2="${sx(t).toFixed(1)}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`);
    out.push(`<text x="${sx(t).toFixed(1)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    if (t < y0 || t > y1) continue;
    out.push(`<line x1="${MARGIN.left}" y1="${sy(t).toFixed(1)}" x2="${MARGIN.left + plotW}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${height - 12}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text>`);

  // Clip lines to the plot area so explicit domains can zoom in.
  out.push(`<clipPath id="plot"><rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}"/></clipPath>`);
  for (const line of spec.hLines ?? []) {
    out.push(
      `<line clip-path="url(#plot)" x1="${MARGIN.left}" y1="${sy(line.y).toFixed(1)}" x2="${MARGIN.left + plotW}" y2="${sy(line.y).toFixed(1)}" stroke="#555" stroke-dasharray="5 4"/>`,
    );
    out.push(`<text x="${MARGIN.left + plotW - 4}" y="${(sy(line.y) - 4).toFixed(1)}" text-anchor="end" fill="#555">${escapeXml(line.label)}</text>`);
  }
  spec.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const pts = [...s.points].filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    if (pts.length > 0) {
      const d = pts.map((p, j) => `${j === 0 ? 'M' : 'L'}${sx(p[0]).toFixed(2)},${sy(p[1]).toFixed(2)}`).join('');
      out.push(`<path clip-path="url(#plot)" d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
    }
    // Legend bottom-right: cost/quality curves rise to the right, leaving that corner empty.
    const ly = MARGIN.top + plotH - 10 - (spec.series.length - 1 - i) * 16;
    const lx = MARGIN.left + plotW - 130;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 20}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${lx + 26}" y="${ly}">${escapeXml(s.name)}</text>`);
  });
  for (const m of spec.markers ?? []) {
    const color = m.color ?? '#000';
    out.push(`<circle cx="${sx(m.x).toFixed(2)}" cy="${sy(m.y).toFixed(2)}" r="5" fill="${color}" stroke="white" stroke-width="1.5"/>`);
    // Keep the label inside the frame: put it left of the point in the right half.
    const right = sx(m.x) > MARGIN.left + plotW / 2;
    out.push(
      `<text x="${(sx(m.x) + (right ? -9 : 9)).toFixed(2)}" y="${(sy(m.y) + 16).toFixed(2)}" text-anchor="${right ? 'end' : 'start'}" fill="${color}">${escapeXml(m.label)}</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
