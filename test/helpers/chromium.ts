/**
 * Headless Chromium (Debian's `chromium`; .ci/run installs it) for tests that must see a page as
 * a browser renders it: the DOM after parsing (`--dump-dom`) and a PNG screenshot. Each call is
 * one short-lived browser with its own profile folder, no network beyond the URL it is given.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The browser's executable name on PATH. */
export const CHROMIUM = 'chromium';

// Root in a container needs --no-sandbox; the rest keeps the browser from reaching out on its own.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--hide-scrollbars',
];

/** Runs chromium with `args` and a fresh profile; resolves with its stdout. */
async function chromium(args: string[], timeoutMs = 60_000): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'cascade-chromium-'));
  try {
    const { stdout } = await promisify(execFile)(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], {
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: NodeJS.ErrnoException & { stderr?: string }) => {
      if (err.code === 'ENOENT') throw new Error(`${CHROMIUM} is not on PATH: apt-get install chromium (.ci/run installs it)`);
      throw new Error(`${CHROMIUM} ${args.join(' ')} failed: ${err.message}\n${err.stderr ?? ''}`);
    });
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** The page's DOM as Chromium serialises it after loading `url`. */
export function dumpDom(url: string): Promise<string> {
  return chromium(['--dump-dom', url]);
}

/** A PNG screenshot of `url` in a `width`×`height` window, written to `file`. */
export async function screenshot(url: string, file: string, width = 1200, height = 800): Promise<void> {
  await chromium([`--screenshot=${file}`, `--window-size=${width},${height}`, url]);
}
