/**
 * The flags that describe a cascade on the command line — config file, calibration, models,
 * routing, batch size — shared by `run`, `submit` and `schedule add`: their commander options,
 * their type, and how they become a validated config.
 */
import { type Command, Option } from 'commander';
import { resolve } from 'node:path';
import { readAnyCalibrationFile } from '../config/calibration.js';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { type CascadeConfig, ConfidenceMetric, InputColumns, Numerics } from '../config/schema.js';
import { calibrationConformance } from '../producers/plan-run.js';
import type { RunSpec } from '../queue/jobs.js';

/** Parses a numeric flag within [min, max] (see cli/main.ts). */
export type NumberParser = (name: string, min: number, max: number) => (value: string) => number;

export interface CascadeFlags {
  config?: string;
  /** calib.json from `cascade calibrate`: threshold and metric. */
  calibration?: string;
  little?: string;
  big?: string;
  threshold?: number;
  metric?: ConfidenceMetric;
  batchSize?: number;
  /** int8 kernels: auto (default), exact or native. */
  numerics?: Numerics;
  /** Take over an output location that holds another run (its objects are deleted first). */
  overwrite?: boolean;
  /** Parquet sources: the column of image bytes, of refs, of sample keys (config `sources.columns`). */
  imageColumn?: string;
  urlColumn?: string;
  keyColumn?: string;
}

/** Add the cascade flags to a command. */
export function cascadeOptions(cmd: Command, number: NumberParser): Command {
  cmd
    .option('--config <file>', 'config file (YAML or JSON)')
    .option('--calibration <calib.json>', 'take threshold and metric from `cascade calibrate` output (flags still win)')
    .option('--little <model>', 'little model: .onnx file or model spec (.yaml/.json)')
    .option('--big <model>', 'big model: .onnx file or model spec (.yaml/.json)')
    .option('--threshold <t>', 'accept the little answer when confidence ≥ t', number('threshold', 0, 1))
    .addOption(new Option('--metric <m>', 'confidence metric (rank: calib.json or --target-agreement)').choices(ConfidenceMetric.options))
    .option('--batch-size <n>', 'images per job', number('batch size', 1, 1024))
    .addOption(
      new Option('--numerics <mode>', "int8 kernels: auto (native where they give exact's numbers, else exact), exact or native").choices(Numerics.options),
    )
    .option('--overwrite', "take over an output location that holds another run, deleting that run's objects there first");
  return columnOptions(cmd);
}

/** Add the Parquet source's column flags to a command (run, submit, schedule add, and the calibration commands). */
export function columnOptions(cmd: Command): Command {
  return cmd
    .option('--image-column <name>', 'Parquet source: the column of image bytes (default: the first of jpg, jpeg, png, webp, image)')
    .option('--url-column <name>', 'Parquet source: a column of image refs (paths or s3:// URLs) instead (default: url, when no image column)')
    .option('--key-column <name>', 'Parquet source: the column of sample keys (default: key, else the row number)');
}

/** The validated config the flags describe (file < environment < calibration < flags); a self-calibrating run's metric defaults to rank. */
export async function loadCascadeConfig(o: CascadeFlags, selfCalibrating = false): Promise<CascadeConfig> {
  const config = await loadConfig({
    file: o.config,
    calibration: o.calibration,
    overrides: { little: o.little, big: o.big, threshold: o.threshold, metric: o.metric, batchSize: o.batchSize, numerics: o.numerics },
    selfCalibrating,
  });
  return withColumnFlags(config, o);
}

/** `config` with the column flags laid over its `sources.columns` (a ConfigError when they name both an image and a URL column). */
export function withColumnFlags(config: CascadeConfig, o: Pick<CascadeFlags, 'imageColumn' | 'urlColumn' | 'keyColumn'>): CascadeConfig {
  const flags = { image: o.imageColumn, url: o.urlColumn, key: o.keyColumn };
  if (Object.values(flags).every((v) => v === undefined)) return config;
  const columns = InputColumns.safeParse({ ...config.sources.columns, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) });
  if (!columns.success) throw new ConfigError(`--image-column / --url-column: ${columns.error.issues.map((i) => i.message).join('; ')}`);
  config.sources.columns = columns.data;
  return config;
}

/** With --calibration: refuse a run whose models or this machine's numerics differ from the calibration's (ConfigError). */
export async function checkCalibration(o: CascadeFlags, run: Pick<RunSpec, 'stages' | 'probeTolerance'>): Promise<void> {
  if (!o.calibration) return;
  const cal = await readAnyCalibrationFile(resolve(o.calibration)).catch((err: Error) => {
    throw new ConfigError(err.message);
  });
  const problem = calibrationConformance(cal, run);
  if (problem)
    throw new ConfigError(`calibration ${o.calibration} does not hold here: ${problem}; run \`cascade calibrate\` on this machine, or use numerics: exact`);
}
