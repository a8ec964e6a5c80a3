/**
 * A scheduled firing's calibration from human reviews (`schedule add --calibration-from`): the
 * candidates from the run tracker (this prefix's merged runs whose output lies under the
 * location, newest first), the schedule's own pinned models scored on the reviewed images in this
 * process, and the firing's spec with the certified routing and the record of what it used.
 */
import { referenceNumerics } from '../config/schema.js';
import { scoreImages } from '../pipeline/calibration/score-images.js';
import type { ScoredModel } from '../pipeline/calibration/tables.js';
import type { ModelCache } from '../pipeline/models/model-cache.js';
import type { CalibrationFrom } from '../pipeline/reviews/review-calibration-record.js';
import { calibrateFromReviews, isUnder } from '../pipeline/reviews/review-calibration.js';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { RunSpec } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';

export interface FiringCalibrationDeps {
  tracker: RunTracker;
  models: ModelCache;
  /** Reads an image within the run's byte limit (the process's local roots apply). */
  fetch: (ref: string, maxBytes: number) => Promise<Buffer>;
  fetchConcurrency: number;
  open: (location: string) => ObjectStore;
}

/** Merged runs of this Redis prefix whose output is `from` or lies under it, newest first (by creation time). */
export async function reviewedRunCandidates(tracker: RunTracker, from: string): Promise<string[]> {
  const runs: RunSpec[] = [];
  for (const runId of await tracker.runIds()) {
    const p = await tracker.progress(runId);
    if (p?.mergedAt && isUnder(p.spec.out, from)) runs.push(p.spec);
  }
  return runs.sort((a, b) => b.createdAt.localeCompare(a.createdAt)).map((s) => s.out);
}

/** The first stage's routing of a spec in words: what a refused firing keeps. */
export function describeRouting(spec: Pick<RunSpec, 'metric' | 'stages' | 'route'>): string {
  if (spec.route === 'big-only') return "the schedule's big-only route";
  const t = spec.stages[0]!.threshold;
  return `the schedule's own calibration: ${spec.metric} ≥ ${typeof t === 'number' ? Number(t.toPrecision(6)) : t}`;
}

/**
 * `spec` (a firing's run) calibrated from the latest reviewed run under `from`: its first stage's
 * metric, threshold and rank reference replaced when the reviews certify the target, unchanged
 * otherwise; either way it carries the record (`reviewCalibration`).
 */
export async function calibrateFiring(spec: RunSpec, from: CalibrationFrom, deps: FiringCalibrationDeps): Promise<RunSpec> {
  const first = spec.stages[0]!;
  const last = spec.stages[spec.stages.length - 1]!;
  const numerics = referenceNumerics(spec.numerics);
  const score = async (stage: RunSpec['stages'][number], refs: readonly string[]): Promise<ScoredModel> => {
    const lease = await deps.models.acquireUnverified(stage.name, stage.model, numerics);
    try {
      const scored = await scoreImages(refs, lease.model, {
        fetch: (ref) => deps.fetch(ref, spec.limits.maxBytes),
        maxPixels: spec.limits.maxPixels,
        fetchConcurrency: deps.fetchConcurrency,
        batchSize: spec.batchSize,
      });
      const { model } = stage;
      return { name: model.name, path: model.path, gmacsPerImage: stage.gmacsPerImage, scored, pin: { sha256: model.sha256, numerics, probe: model.probe } };
    } finally {
      lease.release();
    }
  };
  const { record, routing } = await calibrateFromReviews({
    from,
    candidates: await reviewedRunCandidates(deps.tracker, from.location),
    open: deps.open,
    score: async (refs) => [await score(first, refs), await score(last, refs)],
    fallback: describeRouting(spec),
  });
  if (!routing) return { ...spec, reviewCalibration: record };
  const { rankReference: _old, ...rest } = spec;
  return {
    ...rest,
    metric: routing.metric,
    ...(routing.rankReference ? { rankReference: routing.rankReference } : {}),
    stages: spec.stages.map((s, i) => (i === 0 ? { ...s, threshold: routing.threshold } : s)),
    reviewCalibration: record,
  };
}
