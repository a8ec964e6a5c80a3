/**
 * calib.json as `cascade calibrate` writes it (config/calibration.ts CalibrationFile), for tests
 * that start runs from a calibration without running one; every field a test does not care about
 * has a plain default.
 */
import { CalibrationFile } from '../../config/calibration.js';

type ModelRef = CalibrationFile['little'];
type Point = CalibrationFile['expected'];

export interface CalibFileOptions {
  little: ModelRef;
  big: ModelRef;
  metric?: CalibrationFile['metric'];
  threshold: number;
  rule?: CalibrationFile['rule'];
  /** Fields of the expected operating point that differ from the defaults. */
  expected?: Partial<Point>;
  /** The curve file's name (next to calib.json). */
  curveJson?: string;
}

/** A valid calib.json object (parsed by CalibrationFile, so a test cannot write a stale shape). */
export function calibFile(o: CalibFileOptions): CalibrationFile {
  const expected: Point = {
    images: 100,
    fractionToBig: 0.3,
    gmacsPerImage: o.little.gmacsPerImage + 0.3 * o.big.gmacsPerImage,
    saved: 0.5,
    agreement: 0.97,
    agreementInterval: { low: 0.93, high: 0.99 },
    accuracy: null,
    littleAccuracy: null,
    bigAccuracy: null,
    oracleSaved: null,
    ...o.expected,
  };
  const metric = o.metric ?? 'maxprob';
  return CalibrationFile.parse({
    version: 1,
    createdAt: new Date(0).toISOString(),
    little: o.little,
    big: o.big,
    rule: o.rule ?? 'label-free',
    reason: 'test fixture',
    metric,
    threshold: o.threshold,
    settings: { maxDrop: 0.01, targetAgreement: expected.agreement, metrics: [metric], z: 1.96, calibrationFraction: 0.5 },
    expected,
    test: null,
    skippedImages: 0,
    files: { curveJson: o.curveJson ?? 'calib.curve.json', curveCsv: 'calib.curve.csv', plot: 'calib.svg' },
  });
}
