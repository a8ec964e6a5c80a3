/**
 * The flags of a self-calibrating run — `--target-agreement`, `--delta`, `--warmup` — on `run` and
 * `submit`: their commander options and their checked form. Values are checked here rather than
 * by commander so that nonsense gets one usage line (exit 2), not the help text.
 */
import type { Command } from 'commander';
import { ConfigError } from '../config/load-config.js';
import { parseWarmupSize } from '../pipeline/warmup-sample.js';
import type { RunSpec } from '../queue/jobs.js';

export interface SelfCalibrationFlags {
  targetAgreement?: string;
  delta?: string;
  warmup?: string;
}

/** δ when --delta is not given. */
export const DEFAULT_DELTA = 0.05;

/** Add the self-calibration flags to a command. */
export function selfCalibrationOptions(cmd: Command): Command {
  return cmd
    .option(
      '--target-agreement <a>',
      "self-calibrating run: certify the little model's threshold from a warm-up sample so that kept images agree with the big model's top-1 at rate ≥ a (e.g. 0.95), with probability ≥ 1 − δ; no calib.json, no labels",
    )
    .option('--delta <d>', `with --target-agreement: allowed probability that the promise fails (default ${DEFAULT_DELTA})`)
    .option('--warmup <N|p%>', 'with --target-agreement: warm-up images labelled by both models (default 20 / (1 − a), at least 1% of the source)');
}

/** The self-calibration a run asks for (undefined without --target-agreement); ConfigError (exit 2) on a bad value or combination. */
export function parseSelfCalibration(o: SelfCalibrationFlags & { threshold?: number; calibration?: string }): RunSpec['selfCalibration'] {
  if (o.targetAgreement === undefined) {
    if (o.delta !== undefined || o.warmup !== undefined) throw new ConfigError('--delta and --warmup go with --target-agreement');
    return undefined;
  }
  const target = strictNumber(o.targetAgreement);
  if (!(target > 0 && target < 1)) throw new ConfigError(`--target-agreement ${o.targetAgreement}: expected a fraction between 0 and 1 (e.g. 0.95)`);
  const delta = o.delta === undefined ? DEFAULT_DELTA : strictNumber(o.delta);
  if (!(delta > 0 && delta < 1)) throw new ConfigError(`--delta ${o.delta}: expected a probability between 0 and 1 (e.g. 0.05)`);
  if (o.threshold !== undefined) throw new ConfigError('--target-agreement decides the threshold from the warm-up: drop --threshold');
  if (o.calibration !== undefined) throw new ConfigError('--target-agreement needs no calib.json: drop --calibration');
  let warmup: NonNullable<RunSpec['selfCalibration']>['warmup'];
  if (o.warmup !== undefined) {
    const parsed = parseWarmupSize(o.warmup);
    if ('error' in parsed) throw new ConfigError(parsed.error);
    warmup = parsed.size;
  }
  return { targetAgreement: target, delta, ...(warmup ? { warmup } : {}) };
}

/** A decimal number, or NaN for anything else ('', '0x1', '1e', ' '). */
function strictNumber(text: string): number {
  return /^\s*\d*\.?\d+(e-?\d+)?\s*$/i.test(text) ? Number(text) : Number.NaN;
}
