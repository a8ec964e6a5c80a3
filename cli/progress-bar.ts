/**
 * The progress bar of `cascade run` and `cascade calibrate` on a terminal: one line on stderr,
 * redrawn in place with a carriage return and erase-line only. No saved cursor positions (they
 * go stale as soon as a log line scrolls the screen, and the summary was then printed over the
 * log and the bar), no line wider than the terminal (a wrapped line cannot be redrawn in place),
 * no timer of its own (nothing draws after stop()). Log lines pass through it (logger.ts
 * registerBar): erase the bar, print, draw it again.
 */
import { formatDuration } from './format-status.js';
import type { BarHandle } from './logger.js';

const CELLS = 40;

/** The time left as "42 s" / "3 min 05 s", or '' until it can be estimated (nothing done yet). */
export function formatEta(value: number, total: number, elapsedMs: number): string {
  if (!(value > 0) || !(total > 0) || !(elapsedMs > 0)) return '';
  if (value >= total) return '0 s';
  const seconds = ((total - value) / value) * (elapsedMs / 1000);
  return Number.isFinite(seconds) ? formatDuration(seconds) : '';
}

/** One bar line: `<label>████░░░ 12/40 images | 30% | ETA 4 s | <extra>`. */
export function formatBarLine(label: string, value: number, total: number, elapsedMs: number, extra = ''): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, value / total)) : 0;
  const full = Math.round(fraction * CELLS);
  const cells = `${'\u2588'.repeat(full)}${'\u2591'.repeat(CELLS - full)}`;
  const eta = formatEta(value, total, elapsedMs);
  return `${label}${cells} ${value}/${total} images | ${Math.floor(fraction * 100)}% | ETA ${eta}${extra ? ` | ${extra}` : ''}`;
}

/** `line` cut to `columns - 1` characters, so the terminal never wraps it. */
function fitWidth(line: string, columns: number): string {
  const chars = [...line];
  return chars.length < columns ? line : chars.slice(0, Math.max(1, columns - 1)).join('');
}

/** A bar on `stream` (a TTY); see the module comment. */
export class TerminalBar implements BarHandle {
  private value = 0;
  private total = 1;
  private extra = '';
  private readonly startedAt: number;
  private drawn = false;
  private stopped = false;

  constructor(
    private readonly label = '',
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
  }

  /** Set the progress (and the text after the ETA) and draw it. */
  update(value: number, total: number, extra = this.extra): void {
    this.value = value;
    this.total = total;
    this.extra = extra;
    this.redraw();
  }

  /** Erase the bar's line; the cursor ends at its start. */
  clear(): void {
    if (this.drawn && !this.stopped) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  /** Draw the bar on the current line (a log line was just printed above it). */
  redraw(): void {
    if (this.stopped) return;
    const line = formatBarLine(this.label, this.value, this.total, this.now() - this.startedAt, this.extra);
    this.stream.write(`\r${fitWidth(line, this.stream.columns || 80)}\x1b[K`);
    this.drawn = true;
  }

  /** Leave the bar's last state as a line of its own and end it: what is printed next starts on a fresh line. */
  stop(): void {
    if (this.stopped) return;
    this.redraw();
    this.stream.write('\n');
    this.stopped = true;
  }
}
