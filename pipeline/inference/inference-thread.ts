/**
 * Worker-thread entry of the inference pool: each thread holds one session of one model.
 * session.run is heavy native work; keeping it here leaves the main event loop free for
 * BullMQ lock renewal and I/O.
 */
import { workerData } from 'node:worker_threads';
import { ModelSession, type SessionOptions } from './model-session.js';
import type { Tensor } from '../onnx/float16.js';

export interface ThreadData {
  modelPath: string;
  options: SessionOptions;
}

export type ThreadTask = { kind: 'describe' } | { kind: 'infer'; data: Tensor; n: number };

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
  const { probs, classes } = await model.run(task.data, task.n);
  return { probs, classes, ms: performance.now() - started };
}
