/**
 * The output marker: `_cascade/run.json` names the run that owns an output location. A run
 * claims it before any job is queued (producers/submit-run.ts); `--overwrite` hands it to a new
 * run. Workers read it before each write, so a run whose location was taken over stops writing
 * there instead of mixing its parts into the new run's.
 */
import { z } from 'zod';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { RUN_MARKER_KEY } from './output-layout.js';

export const RunMarker = z.object({ runId: z.string(), specHash: z.string(), createdAt: z.string() });
export type RunMarker = z.infer<typeof RunMarker>;

/** A run's output location now belongs to another run: nothing more of this run may be written there. */
export class RunFencedError extends Error {
  override name = 'RunFencedError';
}

/** The run id the location's marker names; null when it has none (a run started without a claim). */
export async function outputOwner(store: ObjectStore): Promise<string | null> {
  try {
    return (await readJson(store, RUN_MARKER_KEY, RunMarker)).runId;
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
}

/** Throw RunFencedError when the location's marker names a run other than `runId`. */
export async function assertOwnsOutput(store: ObjectStore, runId: string): Promise<void> {
  const owner = await outputOwner(store);
  if (owner !== null && owner !== runId)
    throw new RunFencedError(`run ${runId} no longer owns ${store.describe()}: run ${owner} took it over (--overwrite); its workers write nothing more there`);
}
