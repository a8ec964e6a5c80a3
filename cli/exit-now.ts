/**
 * Exit at once (a second SIGINT/SIGTERM) without a native abort. process.exit while onnxruntime
 * is inside a session run on an inference thread tears the thread's environment down under it,
 * and onnxruntime-node then throws a C++ Napi::Error nobody catches: `terminate called …`, exit
 * 134 (so does terminating the threads). So no new run starts and the runs in flight (one batch
 * each) finish first, bounded by `graceMs`; then the process exits.
 */
import { InferencePool } from '../pipeline/inference/inference-pool.js';

let exiting = false;

/** Let the session runs in flight finish, starting no new one (at most `graceMs`), then exit with `code`. */
export async function exitNow(code: number, graceMs = 5000): Promise<never> {
  if (!exiting) {
    exiting = true;
    await InferencePool.quiesceAll(graceMs);
  }
  process.exit(code);
}
