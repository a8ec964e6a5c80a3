/**
 * The calibration a run was started with, kept next to its results (`calibration-curve.json`)
 * so the merge can draw the calibration curve with the run's realised operating point.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { readAnyCalibrationFile } from '../../config/calibration.js';
import { lineChart, type Marker } from './line-chart.js';

const Point = z.object({ gmacsPerImage: z.number(), agreement: z.number() });

/** The chosen metric's curve (agreement vs GMACs per image) and the promised operating point. */
export const RunCalibration = z.object({
  metric: z.string(),
  threshold: z.number(),
  rule: z.string(),
  expected: Point.extend({ fractionToBig: z.number() }),
  points: z.array(Point),
});
export type RunCalibration = z.infer<typeof RunCalibration>;

/**
 * Read calib.json and its curve file (next to it) into the run's calibration record; null for a
 * chain calibration (N stages), which has no single curve to draw.
 */
export async function readRunCalibration(calibPath: string, maxPoints = 400): Promise<RunCalibration | null> {
  const cal = await readAnyCalibrationFile(calibPath);
  if ('kind' in cal) return null;
  const curvePath = join(dirname(calibPath), cal.files.curveJson);
  let rows: unknown;
  try {
    rows = JSON.parse(await readFile(curvePath, 'utf8'));
  } catch (err) {
    throw new Error(`calibration ${calibPath}: cannot read its curve ${curvePath}: ${(err as Error).message}`);
  }
  const curve = z
    .array(Point.extend({ metric: z.string() }).passthrough())
    .parse(rows)
    .filter((r) => r.metric === cal.metric);
  // A few hundred points draw the same line as thousands, at a fraction of the file size.
  const step = Math.max(1, Math.ceil(curve.length / maxPoints));
  const points = curve.filter((_, i) => i % step === 0 || i === curve.length - 1).map((r) => ({ gmacsPerImage: r.gmacsPerImage, agreement: r.agreement }));
  return {
    metric: cal.metric,
    threshold: cal.threshold,
    rule: cal.rule,
    expected: { gmacsPerImage: cal.expected.gmacsPerImage, agreement: cal.expected.agreement, fractionToBig: cal.expected.fractionToBig },
    points,
  };
}

/** The curve with the promised point and this run's point (its agreement is the audit's, when audited). */
export function runCalibrationSvg(cal: RunCalibration, realised: { gmacsPerImage: number; agreement: number | null }, title: string): string {
  const markers: Marker[] = [
    { x: cal.expected.gmacsPerImage, y: cal.expected.agreement, label: `promised (${cal.rule}, ${cal.metric} ≥ ${cal.threshold.toFixed(3)})`, color: '#000' },
  ];
  markers.push(
    realised.agreement === null
      ? { x: realised.gmacsPerImage, y: cal.expected.agreement, label: 'this run (compute; agreement unmeasured without audit)', color: '#d62728' }
      : { x: realised.gmacsPerImage, y: realised.agreement, label: 'this run (audited agreement)', color: '#d62728' },
  );
  return lineChart({
    title,
    xLabel: 'GMACs per image',
    yLabel: 'little/big agreement on kept images',
    series: [{ name: `calibration curve (${cal.metric})`, points: cal.points.map((p) => [p.gmacsPerImage, p.agreement] as const) }],
    markers,
  });
}
