/**
 * Exit at once (a second SIGINT/SIGTERM) without a native abort. process.exit while onnxruntime
 * is inside a session run on an inference thread tears the thread's environment down under it,
 * and onnxruntime-node then throws a C++ Napi::Error nobody catches: `terminate called …`, exit
 * 134. So the inference threads are stopped first (bounded by `graceMs`), then the process exits.
 */
import { InferencePool } from '../pipeline/inference/inference-pool.js';

let exiting = false;

/** Stop the inference threads (at most `graceMs`), then exit with `code`. */
export async function exitNow(code: number, graceMs = 2000): Promise<never> {
  if (!exiting) {
    exiting = true;
    await Promise.race([InferencePool.stopAll(), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }
  process.exit(code);
}
