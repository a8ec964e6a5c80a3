/**
 * cli/exit-now.ts on a real onnxruntime thread in a real child process: exiting while a session
 * run is in flight must exit 1, not abort natively (134). The control case shows the moment the
 * helper picks is really inside a run: a bare process.exit(1) there aborts.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SlowModels, writeSlowModels } from '../helpers/slow-models.js';

const HELPER = fileURLToPath(new URL('../helpers/exit-during-inference.ts', import.meta.url));
let dir: string;
let models: SlowModels;

/** Runs the helper; resolves with its exit code or signal and its stderr. */
function exitDuringRun(how: 'exit-now' | 'process-exit'): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', HELPER, models.big, how], { timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ code: child.exitCode, signal: child.signalCode ?? (err as { signal?: string } | null)?.signal ?? null, stderr });
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-exit-now-'));
  // K=1024: one batch of 16 is a few hundred ms of native work, wide enough to land in.
  models = await writeSlowModels(dir, { k: 1024, matmuls: 6 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('exitNow', () => {
  it('exits 1 when a session run is in flight on an inference thread, without a native abort', async () => {
    const r = await exitDuringRun('exit-now');
    expect(r.stderr).toMatch(/exiting during a run \(1 on the threads/);
    expect(r.stderr).not.toMatch(/terminate called|Napi::Error/);
    expect([r.code, r.signal]).toEqual([1, null]);
  });

  it('control: process.exit at that same moment aborts natively (what exitNow avoids)', async () => {
    const r = await exitDuringRun('process-exit');
    expect(r.stderr).toMatch(/exiting during a run \(1 on the threads/);
    expect(r.stderr).toMatch(/terminate called after throwing an instance of 'Napi::Error'/);
    expect(r.signal).toBe('SIGABRT');
  });
});
