/**
 * Waiting for a run to finish: polls the run's Redis state and reports progress, so the
 * one-process `cascade run` and `cascade status` share one notion of "done".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { RunSummary } from '../pipeline/results/manifest.js';
import type { RunProgress, RunTracker } from './run-tracker.js';

/** Poll until the run is merged; returns its summary, or throws if the merge failed for good. */
export async function waitForRun(tracker: RunTracker, runId: string, onProgress: (p: RunProgress) => void, intervalMs = 200): Promise<RunSummary> {
  for (;;) {
    const progress = await tracker.progress(runId);
    if (!progress) throw new Error(`run ${runId} is unknown`);
    onProgress(progress);
    if (progress.mergeError) throw new Error(`run ${runId}: merge failed: ${progress.mergeError}`);
    if (progress.mergedAt) {
      const raw = await tracker.summary(runId);
      return RunSummary.parse(JSON.parse(raw!));
    }
    await sleep(intervalMs);
  }
}
