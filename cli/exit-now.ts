/**
 * Exit at once (a second SIGINT/SIGTERM) without a native abort. process.exit stops the
 * inference threads; one stopped inside native onnxruntime work (a session run, or the model
 * load of a pool's first task) returns into a torn-down environment, where onnxruntime-node
 * throws a C++ Napi::Error nobody catches: `terminate called …`, exit 134. So no new task starts
 * on a thread and the ones in flight (one batch or one model load each) return first, bounded by
 * `graceMs`; then the process exits. The jobs left unfinished are BullMQ's stalled jobs.
 */
import { InferencePool } from '../pipeline/inference/inference-pool.js';

let exiting = false;

/** Let the thread tasks in flight return, starting no new one (at most `graceMs`), then exit with `code`. */
export async function exitNow(code: number, graceMs = 30_000): Promise<never> {
  if (!exiting) {
    exiting = true;
    await InferencePool.quiesceAll(graceMs);
  }
  process.exit(code);
}
