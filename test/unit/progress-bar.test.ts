/** The terminal progress bar's line (cli/progress-bar.ts): ETA blank until it can be estimated, never wider than the terminal, nothing drawn after stop. */
import { describe, expect, it } from 'vitest';
import { formatBarLine, formatEta, TerminalBar } from '../../cli/progress-bar.js';

describe('formatEta', () => {
  it('is blank until something is done (cli-progress printed "NFs" for its Infinity)', () => {
    expect(formatEta(0, 40, 5000)).toBe('');
    expect(formatEta(0, 0, 0)).toBe('');
    expect(formatEta(5, 40, 0)).toBe('');
  });
  it('extrapolates the rate so far, and is 0 s when done', () => {
    expect(formatEta(10, 40, 5000)).toBe('15 s');
    expect(formatEta(1, 100, 10_000)).toBe('16 min 30 s');
    expect(formatEta(40, 40, 5000)).toBe('0 s');
  });
});

describe('formatBarLine', () => {
  it('at 0%: an empty bar and a blank ETA', () => {
    expect(formatBarLine('', 0, 40, 1000, 'little 0 big 0 errors 0')).toBe(`${'░'.repeat(40)} 0/40 images | 0% | ETA  | little 0 big 0 errors 0`);
  });
  it('part-way and done', () => {
    expect(formatBarLine('little ', 10, 40, 2000)).toBe(`little ${'█'.repeat(10)}${'░'.repeat(30)} 10/40 images | 25% | ETA 6 s`);
    expect(formatBarLine('', 40, 40, 2000, 'x')).toBe(`${'█'.repeat(40)} 40/40 images | 100% | ETA 0 s | x`);
  });
});

describe('TerminalBar', () => {
  /** A fake 60-column terminal stream that records writes (no TTY is available to unit tests). */
  function stream() {
    const writes: string[] = [];
    return { writes, s: { columns: 60, write: (t: string) => writes.push(t) > 0 } as unknown as NodeJS.WriteStream };
  }

  it('draws in place within the width, erases for a log line, and ends with its own line', () => {
    const { writes, s } = stream();
    let t = 0;
    const bar = new TerminalBar('', s, () => t);
    bar.update(0, 40, 'errors 0');
    expect(writes[0]).toBe(`\r${formatBarLine('', 0, 40, 0, 'errors 0').slice(0, 59)}\x1b[K`);
    t = 1000;
    bar.clear();
    expect(writes.at(-1)).toBe('\r\x1b[2K');
    bar.redraw();
    bar.update(40, 40);
    bar.stop();
    expect(writes.at(-1)).toBe('\n');
    const count = writes.length;
    bar.update(40, 40);
    bar.clear();
    bar.stop();
    expect(writes).toHaveLength(count);
  });
});
