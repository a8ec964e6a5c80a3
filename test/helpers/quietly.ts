/** Console quiet for a command under test: its report (stdout) and warnings (stderr) are captured, not printed. */
import { vi } from 'vitest';

/** Run `fn` with stderr (warnings, summary lines) and stdout (the report) captured. */
export async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const std = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    return await fn();
  } finally {
    err.mockRestore();
    std.mockRestore();
  }
}
