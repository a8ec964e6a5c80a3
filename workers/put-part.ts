/**
 * Writing a batch's result part, fenced: a run whose output location was taken over by another
 * run (--overwrite) must not write there any more.
 */
import { UnrecoverableError } from 'bullmq';
import type { ResultPart } from '../pipeline/results/manifest.js';
import { assertOwnsOutput, RunFencedError } from '../pipeline/results/run-marker.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { RunTracker } from '../queue/run-tracker.js';

/**
 * Write a batch's part, unless the run's output location now belongs to another run: then the run
 * is marked failed and the job fails for good, with no retry.
 */
export async function putPart(store: ObjectStore, key: string, part: ResultPart, tracker: RunTracker): Promise<void> {
  try {
    await assertOwnsOutput(store, part.runId);
  } catch (err) {
    if (!(err instanceof RunFencedError)) throw err;
    await tracker.markFailed(part.runId, err.message);
    throw new UnrecoverableError(err.message);
  }
  await store.put(key, JSON.stringify(part));
}
