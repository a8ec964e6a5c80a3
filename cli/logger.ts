/**
 * Logging for the CLI and workers on stderr, so stdout stays free for results (`--json`).
 * JSON lines (pino) when stderr is not a terminal or with `--log-format json`; on a terminal,
 * compact readable lines that are printed above the progress bar, never through it.
 * Every logged object and message passes through redactValue: no secret reaches a log line.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { type DestinationStream, type Logger, pino } from 'pino';
import { redactSecrets, redactValue } from './redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Structured fields of a log line; `level` picks the level (default info). */
export type LogFields = { level?: LogLevel; [field: string]: unknown };
/** The log function workers and the runtime take. */
export type LogFn = (msg: string, fields?: LogFields) => void;

export interface LoggingOptions {
  quiet?: boolean;
  verbose?: boolean;
  logLevel?: string;
  logFormat?: LogFormat;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const LOG_FORMATS = ['json', 'pretty', 'auto'] as const;
type LogFormat = (typeof LOG_FORMATS)[number];
let settings: { level?: string; format: LogFormat } = { format: 'auto' };

/** The global logging options: `--quiet`, `--verbose`, `--log-level`, `--log-format`. */
export function addLogOptions(program: Command): Command {
  return program
    .addOption(new Option('--log-level <level>', 'log level').choices(LEVELS))
    .option('--quiet', 'log warnings and errors only')
    .option('--verbose', 'log debug lines too')
    .addOption(new Option('--log-format <format>', 'log lines as JSON, or readable (default: readable on a terminal, JSON otherwise)').choices(LOG_FORMATS))
    .hook('preAction', (cmd) => configureLogging(cmd.opts() as LoggingOptions));
}

/** Apply the global options; --log-level wins over --verbose, which wins over --quiet, then CASCADE_LOG_LEVEL. */
export function configureLogging(o: LoggingOptions): void {
  const level = o.logLevel ?? (o.verbose ? 'debug' : o.quiet ? 'warn' : undefined);
  settings = { level, format: o.logFormat ?? settings.format };
}

/** What a progress bar on stderr needs for log lines to be printed above it. */
export interface BarHandle {
  /** Erase the bar's line (the cursor ends at its start). */
  clear(): void;
  /** Draw the bar again below what was just printed. */
  redraw(): void;
}
let activeBar: BarHandle | undefined;

/** While a bar is registered, readable log lines clear it, print, and redraw it; returns the unregister function. */
export function registerBar(bar: BarHandle): () => void {
  activeBar = bar;
  return () => {
    if (activeBar === bar) activeBar = undefined;
  };
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLOURS: Record<number, string> = { 20: '\x1b[90m', 30: '\x1b[36m', 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const OMIT = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'err', 'v']);

/** One readable line for a pino JSON record: `12:03:04 WARN  message key=value … (ErrorName: message)`. */
export function formatPretty(record: Record<string, unknown>, colour = false): string {
  const level = Number(record.level);
  const time = new Date(Number(record.time) || Date.now()).toISOString().slice(11, 19);
  const name = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  const fields = Object.entries(record)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const err = record.err as { type?: string; message?: string } | undefined;
  const errText = err ? ` (${err.type ?? 'Error'}: ${String(err.message ?? '').split('\n')[0]})` : '';
  const head = colour ? `${COLOURS[level] ?? ''}${name}\x1b[0m` : name;
  return `${time} ${head} ${String(record.msg ?? '').split('\n')[0]}${fields.length ? ` ${fields.join(' ')}` : ''}${errText}`;
}

/** Write `text` on stderr, above the active progress bar if any: erase it, print, draw it again. */
function writeAboveBar(text: string): void {
  if (activeBar) {
    activeBar.clear();
    process.stderr.write(text);
    activeBar.redraw();
  } else process.stderr.write(text);
}

/** A destination printing formatPretty lines on stderr, above the active progress bar if any. */
function prettyDestination(): DestinationStream {
  const colour = process.stderr.isTTY === true && !process.env.NO_COLOR;
  return {
    write(line: string) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        record = { level: 30, msg: line.trim() };
      }
      writeAboveBar(`${formatPretty(record, colour)}\n`);
    },
  };
}

function errSerializer(err: unknown): unknown {
  const plain = err instanceof Error ? pino.stdSerializers.err(err) : err;
  return redactValue(plain);
}

/**
 * A logger writing to stderr at `level` (default: the global options, else CASCADE_LOG_LEVEL, else
 * info), as JSON or readable lines per --log-format, else CASCADE_LOG_FORMAT, else whether stderr is a TTY.
 */
export function createLogger(level: string = settings.level ?? process.env.CASCADE_LOG_LEVEL ?? 'info'): Logger {
  const env = process.env.CASCADE_LOG_FORMAT;
  const format = settings.format !== 'auto' ? settings.format : env === 'json' || env === 'pretty' ? env : 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  return pino(
    {
      level,
      base: { pid: process.pid },
      serializers: { err: errSerializer, error: errSerializer },
      formatters: { log: (obj) => redactValue(obj) as Record<string, unknown> },
      hooks: {
        // Messages are redacted too: an error's message can hold a URL with its password.
        logMethod(args, method) {
          const redacted = args.map((a) => (typeof a === 'string' ? redactSecrets(a) : a)) as Parameters<typeof method>;
          method.apply(this, redacted);
        },
      },
    },
    // JSON lines on a terminal (--log-format json) pass the bar too; elsewhere there is no bar.
    pretty ? prettyDestination() : process.stderr.isTTY ? { write: writeAboveBar } : pino.destination(2),
  );
}

/** A LogFn over `logger`: `fields.level` picks the level, the other fields go on the line. */
export function logFn(logger: Logger): LogFn {
  return (msg, fields) => {
    if (!fields) return logger.info(msg);
    const { level = 'info', ...rest } = fields;
    logger[level](rest, msg);
  };
}
