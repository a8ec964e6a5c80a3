/**
 * Resolves the file a worker thread should load for an entry module, both in the compiled
 * build (.js next to the caller) and when running from TypeScript source under tsx/vitest.
 */
import { fileURLToPath } from 'node:url';

/** Thread filename and extra workerData for `entry`, a URL relative to `callerUrl`. */
export function threadEntry(entry: string, callerUrl: string): { filename: string; workerData: Record<string, string> } {
  if (!callerUrl.endsWith('.ts')) return { filename: fileURLToPath(new URL(`${entry}.js`, callerUrl)), workerData: {} };
  return {
    filename: fileURLToPath(new URL('./ts-thread-bootstrap.mjs', import.meta.url)),
    workerData: { __tsEntry: new URL(`${entry}.ts`, callerUrl).href },
  };
}
