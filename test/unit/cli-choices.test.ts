import type { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { REVIEW_EXPORT_FORMATS } from '../../cli/commands/export-review.js';
import { buildProgram } from '../../cli/main.js';
import { ConfidenceMetric, Numerics, SAMPLE_FREE_METRICS } from '../../config/schema.js';
import { CALIBRATION_RULES } from '../../pipeline/calibration/calibrate.js';
import { RISK_METHODS } from '../../pipeline/calibration/risk-control.js';

/** The choices of `flag` on the command at `path` (e.g. ['export', 'review']). */
function choices(path: string[], flag: string): readonly string[] | undefined {
  let cmd: Command = buildProgram();
  for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!;
  const option = (cmd.options as Option[]).find((o) => o.long === flag);
  return option?.argChoices;
}

// The CLI's lists are the schemas' and the modules' own: a value added there is accepted here too.
describe('cli choices', () => {
  it('come from the zod enums and exported constants', () => {
    expect(choices(['run'], '--metric')).toEqual(ConfidenceMetric.options);
    expect(choices(['run'], '--numerics')).toEqual(Numerics.options);
    expect(choices(['calibrate'], '--rule')).toEqual(CALIBRATION_RULES);
    expect(choices(['calibrate'], '--method')).toEqual(RISK_METHODS);
    expect(choices(['calibrate'], '--metric')).toEqual(ConfidenceMetric.options);
    expect(choices(['frontier'], '--metric')).toEqual(SAMPLE_FREE_METRICS);
    expect(choices(['export', 'review'], '--format')).toEqual(REVIEW_EXPORT_FORMATS);
  });
});
