/**
 * `--fail-on-drift` on `cascade run` and `cascade status`: a run whose audit says DRIFT (even the
 * Wilson upper bound of the live little/big agreement is below the agreement the calibration
 * promised) ends with exit 1 and one line. The manifest is complete and kept: the failure says
 * the little model no longer keeps its promise on these images, which a pipeline may want to stop
 * on rather than ship.
 */
import { CascadeFailure } from '../config/errors.js';
import { ConfigError } from '../config/load-config.js';
import type { CascadeConfig } from '../config/schema.js';
import type { AuditSummary } from '../pipeline/audit/audit-summary.js';

/** The run's audit says DRIFT and --fail-on-drift was given (exit 1). */
export class AuditDriftError extends CascadeFailure {
  override name = 'AuditDriftError';
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Refuse --fail-on-drift on a run that audits nothing: it could never fail, which hides a config mistake (exit 2). */
export function checkFailOnDrift(failOnDrift: boolean | undefined, config: Pick<CascadeConfig, 'audit'>): void {
  if (failOnDrift && !config.audit)
    throw new ConfigError('--fail-on-drift needs audits: set audit: { fraction, expectAgreement } in the config (the agreement the calibration promised)');
}

/** Throw AuditDriftError (one line, exit 1) when `audit` says DRIFT. */
export function failOnDrift(runId: string, audit: AuditSummary | undefined): void {
  if (!audit?.drift) return;
  throw new AuditDriftError(
    `run ${runId}: audit DRIFT: ${audit.agreeing}/${audit.sampled} audited images agree (${pct(audit.agreement)}, 95% CI ` +
      `${pct(audit.wilson.low)}–${pct(audit.wilson.high)}), below the promised ${pct(audit.promised ?? 0)} (--fail-on-drift)`,
  );
}
