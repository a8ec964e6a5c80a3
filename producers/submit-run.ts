/**
 * Submitting a run: claim its run id and its output location, record its spec, list the
 * source's first window (producers/run-listing.ts), and enqueue its batches of refs on the first
 * stage's queue with addBulk and deterministic job ids. A run id names one spec and an output location holds one run:
 * resubmitting the same spec adds nothing twice (a finished listing is not repeated, an
 * interrupted one resumes, skipping batches that are queued or done); another spec under the
 * same id, or another run at the same location, is refused.
 */
import { createHash } from 'node:crypto';
import { RUN_MARKER_KEY, RUN_OBJECT_PREFIXES } from '../pipeline/results/output-layout.js';
import { writesShardsLive } from '../pipeline/results/live-shards.js';
import { RunMarker } from '../pipeline/results/run-marker.js';
import { ConfigError } from '../config/load-config.js';
import { DEFAULT_OUTPUT } from '../config/schema.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../pipeline/storage/object-store.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import type { RunSpec } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { queueDecision } from '../queue/threshold-decision.js';
import type { ResumableSource } from './listing-cursor.js';
import { chooseRunWarmup, DEFAULT_WINDOW_BATCHES, listingPass } from './run-listing.js';
import { type ListedInput, refsOf } from './inputs/listed-input.js';

export { ListingFailedError } from './run-listing.js';

/** A run id that is taken by a run with another spec. */
export class RunConflictError extends ConfigError {
  override name = 'RunConflictError';
}

/** An output location that holds another run. */
export class OutputClaimedError extends ConfigError {
  override name = 'OutputClaimedError';
}

export interface SubmitOptions {
  spec: RunSpec;
  /**
   * The source: resumable (the run keeps at most `window` batches in flight and its listing job
   * lists the rest), or plain refs, listed whole now.
   */
  refs: ResumableSource | AsyncIterable<string | ListedInput>;
  /** Batches in flight at most, for a resumable source (default DEFAULT_WINDOW_BATCHES). */
  window?: number;
  /** Bytes of first-stage job payload in flight at most, for a resumable source (config `window.bytes`; default: no byte bound). */
  windowBytes?: number;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** The run's output location, claimed with a marker before any job is queued; null only where nothing is written (the enqueue benchmark). */
  output: ObjectStore | null;
  /** Take over an output location that holds another run, deleting that run's objects first. */
  overwrite?: boolean;
  /** Plain refs only: how many repeated keys the listing dropped (listSource's onDuplicate), read once listing ends. */
  duplicates?: () => number;
  /**
   * A second listing of the same source, for a self-calibrating run: read once before `refs` to
   * choose the warm-up (its size depends on the source's), without the duplicate counting.
   */
  relist?: () => AsyncIterable<string | ListedInput>;
  /** Batches per addBulk call. */
  jobsPerBulk?: number;
  onListed?: (images: number) => void;
}

export interface SubmitResult {
  runId: string;
  /** Images and batches listed so far (all of them once `listing` is done). */
  images: number;
  batches: number;
  /** `continues`: the rest of the source is listed by the run's listing job as batches finish. */
  listing: 'done' | 'continues';
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
  // Prices change what a run's time is worth, output settings how its rows are stored and queue
  // shards where its jobs wait, never the rows: the same run at another price, in another file
  // format or on another queue layout is the same run.
  const { runId: _id, createdAt: _at, prices: _prices, output: _output, queueShards: _shards, ...rest } = spec;
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

/**
 * Record the run and list its first window onto the first stage's queue; when the source holds
 * more, or the run has more than one manifest shard, queue the run's listing job, which lists the
 * rest as batches finish and writes the shards as their parts are counted.
 */
export async function submitRun(o: SubmitOptions): Promise<SubmitResult> {
  const { tracker, queues } = o;
  await checkRunId(tracker, o.spec);
  const takenOver = o.output ? await claimOutput(o.output, o.spec, o.overwrite) : null;
  // A run still in flight there is fenced: its workers see the new marker before writing; its status says why.
  if (takenOver && (await tracker.spec(takenOver)))
    await tracker.markFailed(takenOver, `fenced: its output location was taken over by run ${o.spec.runId} (--overwrite)`);
  const created = await tracker.create(o.spec);
  // The first submission's queue layout stands: a resubmission queues where its batches went, whatever its config says.
  const spec = created ? o.spec : { ...o.spec, queueShards: (await tracker.spec(o.spec.runId))?.queueShards };
  // A self-calibrating run lists in one pass, from the start: its warm-up counts need the whole listing.
  const resumable = 'open' in o.refs && !spec.selfCalibration ? o.refs : null;
  await tracker.setListingPlan(
    spec.runId,
    resumable ? JSON.stringify(resumable.plan) : null,
    resumable ? (o.window ?? DEFAULT_WINDOW_BATCHES) : null,
    resumable ? (o.windowBytes ?? null) : null,
  );
  // The first submission's window stands: a resubmission lists with it, whatever it asked for.
  const stored = resumable ? await tracker.listingState(spec.runId) : null;
  const window = stored?.window ?? null;
  if (!created) {
    // Another submission may have created it between the check and now: same spec or refused.
    await checkRunId(tracker, spec);
    const existing = await tracker.progress(spec.runId);
    // Listing again: a failure an earlier listing recorded no longer stands.
    if (existing?.failedReason && !existing.listed) await tracker.clearFailure(spec.runId);
    if (existing?.listed) {
      // A submitter that died between finishing the listing and queueing the decision: queue it now.
      if (spec.selfCalibration && (await tracker.needsDecision(spec.runId))) await queueDecision(queues, spec);
      // Or the listing job for its shards (BullMQ ignores the job id while it holds that job).
      if (o.output && (await shardsLeftToWriteLive(tracker, spec, existing.batches))) await queues.queueListing(spec.runId);
      return { runId: spec.runId, images: existing.total ?? 0, batches: existing.batches, listing: 'done', alreadySubmitted: true };
    }
  }
  const relist = o.relist;
  const warmup = spec.selfCalibration ? await chooseRunWarmup(spec, tracker, relist && (() => refsOf(relist()))) : null;
  let repeats = 0;
  const source =
    resumable ??
    ('open' in o.refs ? { refs: refsFromStart(o.refs, () => void repeats++), duplicates: () => repeats } : { refs: o.refs, duplicates: o.duplicates });
  const pass = await listingPass({
    spec,
    tracker,
    queues,
    source,
    window: window ?? Number.POSITIVE_INFINITY,
    ...(stored?.windowBytes ? { windowBytes: stored.windowBytes } : {}),
    warmup,
    fresh: created,
    jobsPerBulk: o.jobsPerBulk,
    onListed: o.onListed,
  });
  // Listed whole now, the run's shards are still written while it labels, by the same job.
  if (!pass.done || (o.output && (await shardsLeftToWriteLive(tracker, spec, pass.batches)))) await queues.queueListing(spec.runId);
  return { runId: spec.runId, images: pass.images, batches: pass.batches, listing: pass.done ? 'done' : 'continues', alreadySubmitted: !created };
}

/** Whether a listed run of `batches` batches, not complete yet, has manifest shards to write while it labels (workers/listing-worker.ts). */
export async function shardsLeftToWriteLive(tracker: RunTracker, spec: RunSpec, batches: number): Promise<boolean> {
  return writesShardsLive(spec.output ?? DEFAULT_OUTPUT, spec.batchSize, batches) && !(await tracker.isComplete(spec.runId));
}

/** A resumable source's inputs from the start (a sharded sample with its place in its shard), for a listing in one pass. */
async function* refsFromStart(source: ResumableSource, onDuplicate: () => void): AsyncIterable<ListedInput> {
  for await (const { cursor: _cursor, ...input } of source.open(null, onDuplicate)) yield input;
}
