/**
 * One run as `cascade status` and the dashboard's Runs page show it, shaped from the tracker's
 * snapshot (RunProgress) alone: its state, progress, errors by kind, routing, cost saved and ETA.
 * Pure, so the rules (when a run is done with errors, when an ETA exists) are testable without Redis.
 */
import { z } from 'zod';
import { runQueueShards } from './queue-shards.js';
import type { RunProgress } from './run-tracker.js';

/**
 * Where a run stands. `done-with-errors`: merged, but some images have an error row instead of a
 * label; `failed`: its listing, its merge or one of its jobs failed for good (BullMQ attempts
 * exhausted) and it will not complete by itself (`cascade retry` may resume it).
 */
export const RunState = z.enum(['listing', 'running', 'merging', 'done', 'done-with-errors', 'failed']);
export type RunState = z.infer<typeof RunState>;

/** The view of one run (`cascade status --json` without a run id prints a list of these). */
export const RunView = z.object({
  runId: z.string(),
  state: RunState,
  /** Why the run failed (`listing failed: …`, `merge failed: …`, `N job(s) failed for good: …`); absent unless failed. */
  failedReason: z.string().optional(),
  source: z.string(),
  out: z.string(),
  /** The run's stages, first to last (their queues are `stage-<name>`). */
  stageNames: z.array(z.string()),
  /** BullMQ queues per stage its jobs go to (its spec's `queueShards`, queue/queue-shards.ts). */
  queueShards: z.number().int().positive(),
  /** Images listed in all; null while listing. */
  total: z.number().int().nullable(),
  listed: z.number().int(),
  /** Images listed and queued (or running) without their final row yet: what the run holds in flight. */
  queued: z.number().int(),
  /** Images with their final row (a label or an error). */
  done: z.number().int(),
  /** Batches the run keeps in flight at most while it lists; null: all were queued at once. */
  window: z.number().int().nullable(),
  /** Bytes of queued first-stage job payload the run keeps in flight at most (`window.bytes`); null: no byte bound. */
  windowBytes: z.number().int().nullable(),
  /** Bytes of first-stage job payload held under that bound now (batches not yet final); null without a byte bound. */
  bytesInFlight: z.number().int().nullable(),
  /**
   * Where the listing stands while it lists, in words: `shard 12 of 2,000 (000011.tar), 40 samples in`,
   * `after key …`, `line 1,204`; null once listed, before its first window, or for a listing that keeps no cursor.
   */
  listingAt: z.string().nullable(),
  /** done / total (listed so far while listing), 0..1. */
  fraction: z.number(),
  /** Final error rows, all kinds. */
  errors: z.number().int(),
  /** Final error rows by kind (not-found, forbidden, decode, …); kinds without rows are absent. */
  errorsByKind: z.record(z.string(), z.number().int()),
  /** Fraction of the images the first stage finished that reached the last stage so far; null before any, or with one stage. */
  routed: z.number().nullable(),
  /** Fraction of the big-model-alone machine time saved so far (the tracker's measured cost); null until big-only is known. */
  costSaved: z.number().nullable(),
  imagesPerSecond: z.number(),
  /** Seconds left at the current rate; null until it can be estimated (total known, some rows, some time). */
  etaSeconds: z.number().nullable(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  mergedAt: z.string().nullable(),
  mergeError: z.string().nullable(),
});
export type RunView = z.infer<typeof RunView>;

/** Final error rows of a run, all stages. */
export function errorRows(p: Pick<RunProgress, 'stages'>): number {
  return p.stages.reduce((n, s) => n + s.errors, 0);
}

/** The state a run is in, from its tracker snapshot. */
export function runState(p: RunProgress): RunState {
  if (p.failedReason || p.mergeError) return 'failed';
  if (p.mergedAt) return errorRows(p) > 0 ? 'done-with-errors' : 'done';
  // A job that failed for good leaves images without a final row: the run never completes by itself.
  if ((p.failedJobs ?? 0) > 0) return 'failed';
  if (p.completedAt) return 'merging';
  return p.listed ? 'running' : 'listing';
}

/** Whether a run has finished, well or not: nothing more will happen to it by itself. */
export function isFinished(state: RunState): boolean {
  return state === 'done' || state === 'done-with-errors' || state === 'failed';
}

/** Fraction of the first stage's images that reached the last stage (what the last stage was forwarded); null when unknown. */
export function routedFraction(p: Pick<RunProgress, 'stages'>): number | null {
  const first = p.stages[0]?.images ?? 0;
  if (p.stages.length < 2 || first === 0) return null;
  return (p.stages[p.stages.length - 2]?.forwarded ?? 0) / first;
}

/** Why a run whose jobs failed for good is failed, e.g. `3 job(s) failed for good after their retries (first r-b1-s0: ENOTDIR …); fix the cause, then cascade retry r`. */
function jobsFailedReason(p: RunProgress): string {
  return `${p.failedJobs} job(s) failed for good after their retries${p.jobFailure ? ` (first ${p.jobFailure})` : ''}; fix the cause, then \`cascade retry ${p.spec.runId}\``;
}

/**
 * Words for where a listing stands, from the run's stored cursor and listing plan (JSON): the
 * cursor's kinds are the producers' (producers/describe-listing.ts), so the view is handed this.
 */
export type DescribeListing = (cursor: string, plan: string | null) => string | null;

/** The view of a run from its tracker snapshot at time `now`; `describeListing` words its listing cursor (without it, listingAt is null). */
export function buildRunView(p: RunProgress, now: Date, describeListing?: DescribeListing): RunView {
  const state = runState(p);
  const started = p.startedAt ? Date.parse(p.startedAt) : Number.NaN;
  const end = p.completedAt ? Date.parse(p.completedAt) : now.getTime();
  const seconds = Number.isFinite(started) ? Math.max(0, (end - started) / 1000) : 0;
  const rate = seconds > 0 ? p.final / seconds : 0;
  const of = p.total ?? p.listedImages;
  const left = Math.max(0, of - p.final);
  // An estimate needs the total (listing done), some rows and some elapsed time (rate > 0 holds both).
  const eta = state === 'failed' || p.total === null ? null : p.completedAt ? 0 : rate > 0 ? left / rate : null;
  const failedReason = p.failedReason || (p.mergeError ? `merge failed: ${p.mergeError}` : state === 'failed' ? jobsFailedReason(p) : undefined);
  return {
    runId: p.spec.runId,
    state,
    ...(failedReason ? { failedReason } : {}),
    source: p.spec.source,
    out: p.spec.out,
    stageNames: p.spec.stages.map((s) => s.name),
    queueShards: runQueueShards(p.spec),
    total: p.total,
    listed: p.listedImages,
    queued: Math.max(0, p.listedImages - p.final),
    done: p.final,
    window: p.window ?? null,
    windowBytes: p.windowBytes ?? null,
    bytesInFlight: p.windowBytes ? (p.bytesInFlight ?? 0) : null,
    listingAt: !p.listed && p.cursor && describeListing ? describeListing(p.cursor, p.plan ?? null) : null,
    fraction: of > 0 ? Math.min(1, p.final / of) : isFinished(state) && state !== 'failed' ? 1 : 0,
    errors: errorRows(p),
    errorsByKind: p.errorsByKind,
    routed: routedFraction(p),
    costSaved: p.cost.saved,
    imagesPerSecond: rate,
    etaSeconds: eta,
    startedAt: p.startedAt,
    completedAt: p.completedAt,
    mergedAt: p.mergedAt,
    mergeError: p.mergeError,
  };
}
