/**
 * A finished run's plots, drawn after its merge from what the merge gathered: the confidence
 * histogram per stage (confidence.svg and .png) and, for a run started from a calibration, its
 * curve with the run's realised operating point (calibration.svg).
 */
import type { RunSummary } from '../results/manifest.js';
import { CALIBRATION_SVG_KEY, CONFIDENCE_PNG_KEY, CONFIDENCE_SVG_KEY } from '../results/output-layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import { type ConfidenceHistogram, histogramSvg } from './histogram.js';
import { type RunCalibration, runCalibrationSvg } from './run-calibration.js';
import { svgToPng } from './svg-to-png.js';

/** The plots of a run by key, as summary.json lists them. */
export type RunPlots = NonNullable<RunSummary['plots']>;

/** What a run's plots are drawn from. */
export interface RunPlotData {
  runId: string;
  histogram: ConfidenceHistogram;
  /** The calibration the run was started with and the operating point it realised; absent without one. */
  calibration?: { curve: RunCalibration; realised: { gmacsPerImage: number; agreement: number | null } };
}

/** The keys drawRunPlots writes: the histogram always, the calibration curve for a run started from one. */
export function runPlotKeys(withCalibration: boolean): RunPlots {
  return { confidenceSvg: CONFIDENCE_SVG_KEY, confidencePng: CONFIDENCE_PNG_KEY, ...(withCalibration ? { calibrationSvg: CALIBRATION_SVG_KEY } : {}) };
}

/** Draw a run's plots under `store` (overwriting: drawing twice writes the same bytes). */
export async function drawRunPlots(store: ObjectStore, data: RunPlotData): Promise<RunPlots> {
  const svg = histogramSvg(data.histogram, `run ${data.runId}: confidence per stage`);
  await store.put(CONFIDENCE_SVG_KEY, svg);
  await store.put(CONFIDENCE_PNG_KEY, await svgToPng(svg));
  if (data.calibration) {
    const { curve, realised } = data.calibration;
    await store.put(CALIBRATION_SVG_KEY, runCalibrationSvg(curve, realised, `run ${data.runId}: calibration curve and realised operating point`));
  }
  return runPlotKeys(data.calibration !== undefined);
}
