/**
 * Submitting a run: claim its run id and its output location, record its spec, list the
 * source, and enqueue batches of refs on the first stage's queue with addBulk and
 * deterministic job ids. A run id names one spec and an output location holds one run:
 * resubmitting the same spec adds nothing twice (a finished listing is not repeated, an
 * interrupted one resumes, skipping batches that are queued or done); another spec under the
 * same id, or another run at the same location, is refused.
 */
import { createHash } from 'node:crypto';
import { RUN_MARKER_KEY, RUN_OBJECT_PREFIXES } from '../pipeline/results/output-layout.js';
import { RunMarker } from '../pipeline/results/run-marker.js';
import { CascadeFailure } from '../config/errors.js';
import { ConfigError } from '../config/load-config.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { partId, type RunSpec, type StageJob, warmupPartId } from '../queue/jobs.js';
import type { RunTracker, WarmupState } from '../queue/run-tracker.js';
import { queueDecision } from '../queue/threshold-decision.js';
import { chooseWarmup, inWarmup } from '../pipeline/warmup-sample.js';

/** A run id that is taken by a run with another spec. */
export class RunConflictError extends ConfigError {
  override name = 'RunConflictError';
}

/** An output location that holds another run. */
export class OutputClaimedError extends ConfigError {
  override name = 'OutputClaimedError';
}

/**
 * The source failed part-way through its listing (a bad key-list line, a storage error): the run
 * is marked failed in Redis with the reason, and the command exits 1. The output location stays
 * claimed by the run, so the same command takes the run up again once the source is fixed (on a
 * shared Redis it resumes the listing, skipping the batches already queued).
 */
export class ListingFailedError extends CascadeFailure {
  override name = 'ListingFailedError';
}

export interface SubmitOptions {
  spec: RunSpec;
  refs: AsyncIterable<string>;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** The run's output location, claimed with a marker before any job is queued; null only where nothing is written (the enqueue benchmark). */
  output: ObjectStore | null;
  /** Take over an output location that holds another run, deleting that run's objects first. */
  overwrite?: boolean;
  /** How many repeated keys the listing dropped (listSource's onDuplicate), read once listing ends. */
  duplicates?: () => number;
  /**
   * A second listing of the same source, for a self-calibrating run: read once before `refs` to
   * choose the warm-up (its size depends on the source's), without the duplicate counting.
   */
  relist?: () => AsyncIterable<string>;
  /** Batches per addBulk call. */
  jobsPerBulk?: number;
  onListed?: (images: number) => void;
}

export interface SubmitResult {
  runId: string;
  images: number;
  batches: number;
  /** False only for the submission that created the run; a resubmission (or the loser of two at once) says true. */
  alreadySubmitted: boolean;
}

/** A stable run id for the same source, output and cascade settings. */
export function deriveRunId(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/**
 * The identity of a run: everything that decides its rows, but not the probe's measured
 * numbers (they vary in the last digits with the planning machine) nor when it was created.
 */
export function runIdentity(spec: Omit<RunSpec, 'runId' | 'createdAt'> & Partial<Pick<RunSpec, 'runId' | 'createdAt'>>): unknown {
  // Prices change what a run's time is worth, and output settings how its rows are stored, never
  // the rows: the same run at another price or in another file format is the same run.
  const { runId: _id, createdAt: _at, prices: _prices, output: _output, ...rest } = spec;
  const stages = rest.stages.map(({ model: { probe: _probe, ...model }, ...stage }) => ({ ...stage, model }));
  return { ...rest, stages };
}

/** The hash of a run's identity, recorded in its output marker. */
export function specHash(spec: RunSpec): string {
  return createHash('sha256')
    .update(JSON.stringify(runIdentity(spec)))
    .digest('hex');
}

/** Where two specs of one run id differ, as "field: old → new" lines (empty when they are the same run). */
export function specDifferences(existing: RunSpec, wanted: RunSpec): string[] {
  const a = flatten(runIdentity(existing));
  const b = flatten(runIdentity(wanted));
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys.filter((k) => a.get(k) !== b.get(k)).map((k) => `${k}: ${a.get(k) ?? '(none)'} → ${b.get(k) ?? '(none)'}`);
}

/** Leaf values of a JSON value by dotted path. */
function flatten(value: unknown, path = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) flatten(v, path ? `${path}.${k}` : k, out);
  } else {
    out.set(path, JSON.stringify(value));
  }
  return out;
}

/** Refuse `spec` when its run id is taken by another spec. */
async function checkRunId(tracker: RunTracker, spec: RunSpec): Promise<void> {
  const existing = await tracker.spec(spec.runId);
  if (!existing) return;
  const diff = specDifferences(existing, spec);
  if (diff.length > 0) {
    throw new RunConflictError(
      `run ${spec.runId} already exists with another spec; submit with another --run-id (or none, to derive one):\n${diff.map((d) => `  ${d}`).join('\n')}`,
    );
  }
}

/**
 * Mark `output` as `spec`'s before any job is queued. A location marked by another run is
 * refused, or with `overwrite` cleared of that run's objects and taken over; returns the id of
 * the run taken over (null when none).
 */
export async function claimOutput(output: ObjectStore, spec: RunSpec, overwrite = false): Promise<string | null> {
  const marker: RunMarker = { runId: spec.runId, specHash: specHash(spec), createdAt: spec.createdAt };
  // The run whose objects --overwrite cleared: its workers find the new marker and write nothing more.
  let takenOver: string | null = null;
  for (let attempt = 0; attempt < 2; attempt++) {
    const claimed = await output.putIfAbsent(RUN_MARKER_KEY, `${JSON.stringify(marker)}\n`).catch((err: Error) => {
      // Found now, before any job runs, instead of as batches that fail for good.
      throw new OutputClaimedError(`cannot write to the output location ${output.describe()}: ${err.message}`, { cause: err });
    });
    if (claimed) return takenOver;
    let held: RunMarker;
    try {
      held = await readJson(output, RUN_MARKER_KEY, RunMarker);
    } catch (err) {
      if (isObjectNotFound(err)) continue; // removed meanwhile: claim again
      throw err;
    }
    if (held.runId === spec.runId && held.specHash === marker.specHash) return null;
    if (!overwrite) {
      const what = held.runId === spec.runId ? `run ${held.runId} with another spec` : `run ${held.runId} (created ${held.createdAt})`;
      throw new OutputClaimedError(`${output.describe()} holds ${what}; choose another --out, or pass --overwrite to delete that run's objects there first`);
    }
    await clearRunObjects(output);
    if (held.runId !== spec.runId) takenOver = held.runId;
  }
  throw new OutputClaimedError(`${output.describe()}: another submission claimed it at the same moment; try again`);
}

/** Delete what a run writes under its output location (and nothing else a user keeps there). */
async function clearRunObjects(output: ObjectStore): Promise<void> {
  for (const prefix of RUN_OBJECT_PREFIXES) {
    const keys: string[] = [];
    for await (const o of output.list(prefix)) if (o.key === prefix || prefix.endsWith('/')) keys.push(o.key);
    for (const key of keys) await output.delete(key);
  }
}

/** Record the run and enqueue all of its batches on the first stage. */
export async function submitRun(o: SubmitOptions): Promise<SubmitResult> {
  const { spec, tracker, queues } = o;
  await checkRunId(tracker, spec);
  const takenOver = o.output ? await claimOutput(o.output, spec, o.overwrite) : null;
  // A run still in flight there is fenced: its workers see the new marker before writing; its status says why.
  if (takenOver && (await tracker.spec(takenOver)))
    await tracker.markFailed(takenOver, `fenced: its output location was taken over by run ${spec.runId} (--overwrite)`);
  const created = await tracker.create(spec);
  if (!created) {
    // Another submission may have created it between the check and now: same spec or refused.
    await checkRunId(tracker, spec);
    const existing = await tracker.progress(spec.runId);
    // Listing again: a failure an earlier listing recorded no longer stands.
    if (existing?.failedReason && !existing.listed) await tracker.clearFailure(spec.runId);
    if (existing?.listed) {
      // A submitter that died between finishing the listing and queueing the decision: queue it now.
      if (spec.selfCalibration && (await tracker.needsDecision(spec.runId))) await queueDecision(queues, spec);
      return { runId: spec.runId, images: existing.total ?? 0, batches: existing.batches, alreadySubmitted: true };
    }
  }
  const warmup = spec.selfCalibration ? await chooseRunWarmup(o) : null;
  const first = spec.stages[0]!.name;
  const jobsPerBulk = o.jobsPerBulk ?? 100;
  let pending: StageJob[] = [];
  let warmupJobs: StageJob[] = [];
  let batchRefs: string[] = [];
  let images = 0;
  let batches = 0;
  let warmupImages = 0;

  const flush = async () => {
    if (warmup) {
      // Warm-up images go through every stage now; the ordinary jobs wait in Redis until the
      // threshold is decided from them (queue/threshold-decision.ts releases them).
      const todo = created ? warmupJobs : await filterNotDone(warmupJobs, tracker);
      await tracker.addWarmupBatches(
        spec.runId,
        warmupJobs.map((j) => j.batch),
      );
      await queues.addStageJobs(first, todo);
      await tracker.hold(spec.runId, pending);
    } else {
      // On a resumed submission, batches whose first stage already finished must not run again.
      const todo = created ? pending : await filterNotDone(pending, tracker);
      await queues.addStageJobs(first, todo);
    }
    await tracker.setListing(spec.runId, images, batches);
    o.onListed?.(images);
    pending = [];
    warmupJobs = [];
  };
  const closeBatch = () => {
    const items: StageJob['items'] = batchRefs.map((ref, pos) =>
      warmup && inWarmup(spec.runId, ref, warmup.cutoff) ? { ref, pos, warmup: true as const } : { ref, pos },
    );
    pending.push({ runId: spec.runId, batch: batches, stage: 0, items });
    const lane = items.filter((i) => i.warmup).map(({ ref, pos }) => ({ ref, pos }));
    if (lane.length) warmupJobs.push({ runId: spec.runId, batch: batches, stage: 0, lane: 'warmup', items: lane });
    warmupImages += lane.length;
    batches += 1;
    batchRefs = [];
  };

  try {
    for await (const ref of listingErrorsMarked(o.refs)) {
      batchRefs.push(ref);
      images += 1;
      if (batchRefs.length === spec.batchSize) closeBatch();
      if (pending.length >= jobsPerBulk) await flush();
    }
  } catch (err) {
    if (!(err instanceof ListingError)) throw err;
    const reason = `listing failed: ${oneLine(err.cause)}`;
    // Best effort: with Redis itself down, the error below still says what happened.
    await tracker.markFailed(spec.runId, reason).catch(() => undefined);
    throw new ListingFailedError(
      `run ${spec.runId} failed: ${reason} (after ${images} images); the output claim on ${spec.out} stays with this run: ` +
        'once the source is fixed, the same command takes the run up again (or choose another --out, or pass --overwrite)',
      { cause: err.cause },
    );
  }
  if (batchRefs.length > 0) closeBatch();
  await flush();

  if (await tracker.finishListing(spec.runId, images, batches, o.duplicates?.() ?? 0, warmup ? warmupImages : undefined))
    await queues.queueMerge(spec.runId, tracker);
  // The warm-up may have finished while the listing went on (or be empty): then decide now.
  if (warmup && (await tracker.needsDecision(spec.runId))) await queueDecision(queues, spec);
  return { runId: spec.runId, images, batches, alreadySubmitted: !created };

  /** The run's warm-up, chosen by the first listing and kept in Redis, so a resumed listing splits the batches alike. */
  async function chooseRunWarmup(opts: SubmitOptions): Promise<WarmupState> {
    const held = await tracker.warmup(spec.runId);
    if (held) return held;
    if (!opts.relist) throw new Error(`run ${spec.runId} is self-calibrating: submitRun needs relist() to choose its warm-up`);
    const settings = spec.selfCalibration!;
    const choice = await chooseWarmup(opts.relist(), spec.runId, settings.warmup, settings.targetAgreement);
    return tracker.setWarmup(spec.runId, { images: choice.images, cutoff: choice.cutoff });
  }
}

/** An error of the source's own iteration, told apart from a failure to queue what it listed. */
class ListingError extends Error {}

/** `refs`, with an error the listing itself throws wrapped as a ListingError. */
async function* listingErrorsMarked(refs: AsyncIterable<string>): AsyncIterable<string> {
  try {
    // An error thrown by the consumer's loop body is not thrown here: only the source's own.
    yield* refs;
  } catch (err) {
    throw new ListingError('listing failed', { cause: err });
  }
}

/** The first line of an error's message. */
function oneLine(err: unknown): string {
  return ((err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '').slice(0, 500);
}

async function filterNotDone(jobs: StageJob[], tracker: RunTracker): Promise<StageJob[]> {
  const done = await Promise.all(jobs.map((j) => tracker.isPartDone(j.runId, j.lane === 'warmup' ? warmupPartId(j.batch, 0) : partId(j.batch, 0))));
  return jobs.filter((_, i) => !done[i]);
}
