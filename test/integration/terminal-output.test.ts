/**
 * Issue 24, item 1, in a real pseudo-terminal: `cascade run` inside tmux (the built CLI, generated
 * models, a private redis-server), its screen read back with `tmux capture-pane`. The progress
 * bar, the log lines and the end-of-run summary never overwrite one another: every summary line
 * is intact and the bar's last state is a line of its own above it.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withTempDir } from '../helpers/fixtures.js';

const execFileP = promisify(execFile);
const N = 40;
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
// A tmux server of this file's own (-L): the test never talks to anyone else's sessions.
const socket = `cascade-test-${process.pid}`;
const tmux = (...args: string[]) => execFileP('tmux', ['-L', socket, ...args], { timeout: 10_000 });

const work = withTempDir('terminal');
const models = withModels(work);
let cascade: string;

/** A shell word, quoted. */
const sh = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

beforeAll(async () => {
  if (!hasTmux) return;
  const images = join(work.path, 'images');
  await mkdir(images);
  for (let i = 0; i < N; i++) {
    // Every eighth image grey: the little model is unsure, the big one decides.
    const [r, g, b] = i % 8 === 7 ? [128, 128, 128] : [255, (i * 5) % 64, 0];
    await writeFile(
      join(images, `img-${String(i).padStart(2, '0')}.png`),
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: r!, g: g!, b: b! } } })
        .png()
        .toBuffer(),
    );
  }
  const spec = async (name: string, path: string) => {
    const file = join(work.path, `${name}.json`);
    await writeFile(file, JSON.stringify(colourSpec(path, models.labels)));
    return file;
  };
  const args = ['run', images, '--little', await spec('little', models.colourLittle), '--big', await spec('big', models.colourBig)];
  cascade = [process.execPath, resolve('bin/cascade.js'), ...args, '--threshold', '0.9', '--batch-size', '4'].map(sh).join(' ');
});

/** `cascade run` in a new tmux session with log lines as `format`; resolves with its screen once it exited. */
async function runOnTerminal(format: 'pretty' | 'json'): Promise<string> {
  // A private Redis (no REDIS_URL), its own output, and the exit code left on screen.
  const command = `env -u REDIS_URL NO_COLOR=1 CASCADE_LOG_LEVEL=info ${cascade} --out ${sh(join(work.path, `out-${format}`))} --log-format ${format}; echo "EXIT=$?"; sleep 600`;
  await tmux('new-session', '-d', '-s', format, '-x', '120', '-y', '60', '-c', process.cwd(), command);
  let screen = '';
  for (let i = 0; i < 600 && !/^EXIT=\d+$/m.test(screen); i++) {
    await sleep(200);
    // -J joins lines the terminal wrapped; -S - includes what scrolled off.
    screen = (await tmux('capture-pane', '-p', '-J', '-S', '-', '-t', format)).stdout;
  }
  return screen;
}

afterAll(async () => {
  if (hasTmux) await tmux('kill-server').catch(() => undefined);
});

describe.skipIf(!hasTmux)('cascade run on a terminal (tmux)', () => {
  it.each([
    ['pretty', /^\d\d:\d\d:\d\d INFO {2}listed \d+ images in \d+ batches$/],
    ['json', /^\{"level":30,.*"msg":"listed \d+ images in \d+ batches"\}$/],
  ] as const)(
    '%s log lines: the summary lines are intact and the bar’s last line is separate from them',
    async (format, listedLine) => {
      const screen = await runOnTerminal(format);
      const lines = screen.split('\n').map((l) => l.trimEnd());
      expect(lines, screen).toContain('EXIT=0');
      const head = lines.findIndex((l) => /^run \S+: \d+ images/.test(l));
      expect(head, screen).toBeGreaterThan(0);
      expect(lines[head], screen).toMatch(new RegExp(`^run [0-9a-f]+: ${N} images \\(${N} labeled, 0 errors\\) in [\\d.]+ s, [\\d.]+ images/s$`));
      // The summary's lines run to its `summary:` line, each whole: indented, no piece of the bar or of a log line in it.
      const end = lines.findIndex((l, i) => i > head && /^ {2}summary: {2}\S+summary\.json$/.test(l));
      expect(end, screen).toBeGreaterThan(head);
      const summary = lines.slice(head + 1, end + 1);
      for (const l of summary) {
        expect(l, screen).toMatch(/^ {2}\S/);
        expect(l, screen).not.toMatch(/█|░|images \||ETA|\d\d:\d\d:\d\d (INFO|WARN)|"level"/);
      }
      expect(
        summary.filter((l) => /^ {2}routed to big: [\d.]+% at maxprob ≥ 0\.9$/.test(l)),
        screen,
      ).toHaveLength(1);
      expect(
        summary.filter((l) => /^ {2}compute: [\d.]+ GMACs vs [\d.]+ big-only, .*saved$/.test(l)),
        screen,
      ).toHaveLength(1);
      expect(
        summary.filter((l) => /^ {2}little +\d+ seen, +\d+ accepted, +\d+ forwarded, +0 errors; ms\/img fetch [\d.]+ decode [\d.]+ infer [\d.]+/.test(l)),
        screen,
      ).toHaveLength(1);
      // The bar's final state: complete, on its own line, above the summary (log lines may sit between).
      const bars = lines.slice(0, head).filter((l) => l.includes(`${N}/${N} images | 100%`));
      expect(bars, screen).toHaveLength(1);
      expect(bars[0], screen).toMatch(new RegExp(`^█+ ${N}/${N} images \\| 100% \\| ETA 0 s \\| little \\d+ big \\d+ errors 0$`));
      // Log lines printed while the bar ran are whole lines too.
      expect(
        lines.filter((l) => listedLine.test(l)),
        screen,
      ).toHaveLength(1);
    },
    150_000,
  );
});
