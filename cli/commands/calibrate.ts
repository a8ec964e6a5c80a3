/**
 * `cascade calibrate`: run both models once over the calibration images (cached), sweep the
 * thresholds, apply the selection rules, and write calib.json, the curve (JSON + CSV) and an
 * SVG plot of accuracy (or agreement) against compute.
 */
import { writeFile } from 'node:fs/promises';
import { makeDir } from '../../pipeline/storage/make-dir.js';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { calibrate, type CalibrationOutcome } from '../../pipeline/calibration/calibrate.js';
import { calibrationFile, calibrationPlot, curveCsv, curveRows, formatCalibration } from '../../pipeline/calibration/report.js';
import type { CalibrationFile } from '../../config/calibration.js';
import { buildTables } from '../../pipeline/calibration/tables.js';
import { dataContext, labeledImages, listImages, readReviewTruth, ruleOptions, scoreModel } from '../calibration-data.js';
import type { CalibrationCliOptions } from '../calibration-data.js';
import { measureModels } from '../model-timings.js';
import { pairVerdict } from '../../pipeline/cost/verdict.js';
import { formatVerdict, verdictWarnings } from '../format-verdict.js';

export interface CalibrateOptions extends CalibrationCliOptions {
  /** N-stage chain: model refs, tiny first (see calibrate-chain.ts). */
  stages?: string[];
  little?: string;
  big?: string;
  out: string;
  /** A reviewed run's output location: its human labels are the ground truth (instead of --labels). */
  reviews?: string;
  /** With --reviews: every review, not only the random slice's. */
  allReviews?: boolean;
}

/** Output file names derived from calib.json's path: calib.curve.json, calib.curve.csv, calib.svg. */
export function outputFiles(out: string): CalibrationFile['files'] & { calib: string } {
  const calib = resolve(out);
  const stem = calib.replace(/\.json$/i, '');
  return { calib, curveJson: `${stem}.curve.json`, curveCsv: `${stem}.curve.csv`, plot: `${stem}.svg` };
}

/** Calibrate a little/big pair and write the outputs; resolves with calib.json's content. */
export async function calibrateCommand(o: CalibrateOptions): Promise<{ file: CalibrationFile; outcome: CalibrationOutcome }> {
  const config = await loadConfig({ file: o.config, overrides: { little: o.little, big: o.big } });
  const fraction = o.calibrationFraction ?? 0.5;
  const ctx = dataContext(config, o);

  if (o.reviews !== undefined && (o.labels !== undefined || o.labelColumn !== undefined))
    throw new ConfigError(`give the ground truth with ${o.labels !== undefined ? '--labels' : '--label-column'} or --reviews, not both`);
  const reviewed = o.reviews === undefined ? null : await readReviewTruth(o.reviews, o.images, ctx, o.allReviews);
  // With reviews, the calibration sample is the reviewed images among --images.
  const { refs, truth, unlabeled } = reviewed
    ? { refs: (await listImages(o.images, ctx)).filter((r) => reviewed.keys.has(r)), truth: reviewed.truth, unlabeled: 0 }
    : await labeledImages(o, ctx);
  if (reviewed) {
    if (refs.length === 0)
      throw new ConfigError(`none of the ${reviewed.used} reviewed images of ${o.reviews} is in ${o.images}: give the run's source as --images`);
    ctx.log(
      `ground truth: ${refs.length} human reviews of ${o.reviews}${reviewed.leftOut ? ` (${reviewed.leftOut} picked ones left out: not a random sample)` : ''}`,
    );
  }
  const little = await scoreModel('little', config.little, refs, ctx);
  const big = await scoreModel('big', config.big, refs, ctx);
  const tables = buildTables(refs, o.images, little, big, truth, fraction);
  if (tables.skipped.length)
    ctx.log(`${tables.skipped.length} image(s) could not be scored and are left out, e.g. ${tables.skipped[0]!.key}: ${tables.skipped[0]!.message}`);

  const outcome = calibrate(tables.calibration, tables.test, { littleGmacs: little.gmacsPerImage, bigGmacs: big.gmacsPerImage }, ruleOptions(o));
  const names = { little: config.little.name ?? basename(config.little.path), big: config.big.name ?? basename(config.big.path) };
  // The verdict weighs the certified cascade against each model alone at this machine's measured costs.
  const [littleCost, bigCost] = await measureModels(
    [
      { name: names.little, spec: config.little },
      { name: names.big, spec: config.big },
    ],
    refs,
    ctx,
    o,
  );
  const c = outcome.chosen;
  const cost = pairVerdict(
    littleCost!,
    bigCost!,
    { fractionToBig: c.point.fractionToBig, meets: true, label: `${c.metric} ≥ ${Number(c.threshold.toPrecision(4))}` },
    config.prices,
  );
  for (const w of [...outcome.warnings, ...verdictWarnings(cost)]) process.stderr.write(`cascade: warning: ${w}\n`);
  const files = outputFiles(o.out);
  const file = calibrationFile(
    outcome,
    { little: { name: names.little, path: config.little.path, pin: little.pin }, big: { name: names.big, path: config.big.path, pin: big.pin } },
    {
      calibrationFraction: fraction,
      skippedImages: tables.skipped.length,
      unlabeledImages: unlabeled,
      files: { curveJson: basename(files.curveJson), curveCsv: basename(files.curveCsv), plot: basename(files.plot) },
      ...(reviewed ? { reviews: { run: o.reviews!, used: refs.length, leftOut: reviewed.leftOut, latest: reviewed.latest } } : {}),
    },
  );
  file.cost = cost;
  const rows = curveRows(outcome);
  await makeDir(dirname(files.calib));
  await writeFile(files.curveJson, `${JSON.stringify(rows)}\n`);
  await writeFile(files.curveCsv, curveCsv(rows));
  await writeFile(files.plot, calibrationPlot(outcome, `${names.little} → ${names.big}: ${outcome.labeled ? 'accuracy' : 'agreement'} vs compute`));
  await writeFile(files.calib, `${JSON.stringify(file, null, 2)}\n`);
  process.stdout.write(
    o.json
      ? `${JSON.stringify(file, null, 2)}\n`
      : `${formatCalibration(outcome, file)}\n${formatVerdict(cost)}\nwrote ${files.calib}, ${basename(files.curveCsv)}, ${basename(files.curveJson)}, ${basename(files.plot)}\n`,
  );
  return { file, outcome };
}
