/**
 * Logging for the CLI and workers: pino JSON lines on stderr, so stdout stays free for
 * results (`--json`) and a progress bar can share the terminal.
 */
import { pino, type Logger } from 'pino';

/** A pino logger writing to stderr at `level`. */
export function createLogger(level: string = process.env.CASCADE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination(2));
}
