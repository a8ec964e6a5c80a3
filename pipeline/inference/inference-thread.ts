/**
 * Worker-thread entry of the inference pool: each thread holds one session of one model.
 * session.run is heavy native work; keeping it here leaves the main event loop free for
 * BullMQ lock renewal and I/O.
 */
import { workerData } from 'node:worker_threads';
import { ModelSession, type SessionOptions } from './model-session.js';
import { currentThreadId, threadCpuSeconds } from './thread-cpu.js';
import type { Tensor } from '../onnx/float16.js';

export interface ThreadData {
  modelPath: string;
  options: SessionOptions;
  /**
   * Where each thread of the pool writes its kernel thread id as it starts: [count, tid…]. The
   * process's cost meter reads those threads' CPU live and charges it to the calls, not to
   * whichever jobs were running (inference-pool.ts).
   */
  threadIds?: Int32Array;
}

export type ThreadTask = { kind: 'describe' } | { kind: 'infer'; data: Tensor; n: number };

registerThread((workerData as ThreadData).threadIds);

/** Write this thread's id into the pool's table, once, as the thread starts (piscina loads this module then). */
function registerThread(ids: Int32Array | undefined): void {
  const tid = currentThreadId();
  if (!ids || tid === null) return;
  const slot = Atomics.add(ids, 0, 1) + 1;
  if (slot < ids.length) Atomics.store(ids, slot, tid);
}

// One session per thread, opened on first use so a load failure is reported as a task error.
let session: Promise<ModelSession> | undefined;

function open(): Promise<ModelSession> {
  const { modelPath, options } = workerData as ThreadData;
  session ??= ModelSession.open(modelPath, options);
  return session;
}

/** Handle one pool task: describe the model, or infer a stacked batch. */
export default async function handle(task: ThreadTask) {
  const model = await open();
  if (task.kind === 'describe') return { io: model.io, provider: model.provider };
  const started = performance.now();
  const cpu = threadCpuSeconds('self');
  const { probs, classes } = await model.run(task.data, task.n);
  const ms = performance.now() - started;
  const after = cpu === null ? null : threadCpuSeconds('self');
  // This thread's CPU for the call (ORT's own pool threads, with intraOpThreads > 1, are not in it).
  return { probs, classes, ms, ...(after !== null && cpu !== null ? { cpuSeconds: Math.max(0, after - cpu) } : {}) };
}
