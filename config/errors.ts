/**
 * The one error hierarchy of Cascade: every error a person can act on derives from
 * CascadeError and carries the process exit code it maps to. The CLI prints such errors as
 * one line (`cascade: <message>`) and exits with `exitCode`; anything else is a bug and gets
 * its stack trace.
 *
 * Exit codes: 0 success, 1 the run or check failed, 2 usage or configuration error.
 */

/** Exit code for a usage or configuration error. */
export const EXIT_USAGE = 2;
/** Exit code for a run or check that failed. */
export const EXIT_FAILED = 1;

/** An error with a precise message for the user and the exit code it maps to (2 unless said). */
export class CascadeError extends Error {
  override name = 'CascadeError';
  readonly exitCode: number = EXIT_USAGE;
}

/** A run or check that failed (exit 1), as opposed to a usage or configuration error. */
export class CascadeFailure extends CascadeError {
  override name = 'CascadeFailure';
  override readonly exitCode: number = EXIT_FAILED;
}
