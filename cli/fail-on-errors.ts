/**
 * `--fail-on-errors` on `cascade status`: a run that failed, or finished with error rows (images
 * it could not label: not found, forbidden, undecodable, …), ends the command with exit 1 and one
 * line naming each such run, so a pipeline can stop instead of shipping a partial manifest.
 */
import { CascadeFailure } from '../config/errors.js';
import type { RunView } from '../queue/run-view.js';
import { formatErrors } from './format-status.js';

/** A shown run failed or is done with errors and --fail-on-errors was given (exit 1). */
export class RunErrorsError extends CascadeFailure {
  override name = 'RunErrorsError';
}

/** Throw RunErrorsError (one line, exit 1) when any of `runs` is failed or done-with-errors. */
export function failOnErrors(runs: readonly RunView[]): void {
  const bad = runs.filter((r) => r.state === 'failed' || r.state === 'done-with-errors');
  if (bad.length === 0) return;
  const what = (r: RunView) =>
    r.state === 'failed' ? `run ${r.runId} failed: ${r.failedReason ?? 'unknown reason'}` : `run ${r.runId} done with ${formatErrors(r)} error rows`;
  throw new RunErrorsError(`${bad.map(what).join('; ')} (--fail-on-errors)`);
}
