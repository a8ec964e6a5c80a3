/**
 * A run's listing, a window at a time. One pass lists the source from the cursor stored with the
 * run, cuts it into batches, queues them with deterministic job ids, and saves the counts and the
 * cursor after each addBulk, until the run has `window` batches in flight or the source ends.
 * The submitter runs the first pass; the listing job (workers/listing-worker.ts) the next ones
 * as batches finish. A pass killed anywhere is simply run again: batches after the saved cursor
 * are cut the same way, get the same job ids (BullMQ ignores ids it holds) and are skipped when
 * their first stage already counted them, so every image gets its row exactly once.
 */
import { CascadeFailure } from '../config/errors.js';
import type { Stores } from '../pipeline/storage/stores.js';
import { chooseWarmup, inWarmup } from '../pipeline/warmup-sample.js';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { partId, type RunSpec, type StageJob, warmupPartId } from '../queue/jobs.js';
import type { RunTracker, WarmupState } from '../queue/run-tracker.js';
import { queueDecision } from '../queue/threshold-decision.js';
import { listSourceFrom } from './list-source.js';
import { type ListingCursor, type ListingPlan, parseCursor } from './listing-cursor.js';
import type { SampleLocator } from '../pipeline/inputs/sample-locator.js';
import { asListed, type ListedInput } from './inputs/listed-input.js';

/** Batches a run keeps in flight unless its config says otherwise (`window.batches`). */
export const DEFAULT_WINDOW_BATCHES = 1000;

/** A source a listing pass can open at a stored cursor, in any process that has `plan`. */
export interface ResumableSource {
  plan: ListingPlan;
  /** The refs after `cursor` (all from null), each with the cursor after it; `onDuplicate` is called per repeat dropped. */
  open(cursor: ListingCursor | null, onDuplicate: () => void): AsyncIterable<{ ref: string; cursor: ListingCursor }>;
}

/** `plan`'s source, listed by list-source.ts (remote ones through `stores`). */
export function resumableSource(plan: ListingPlan, stores: Stores): ResumableSource {
  return { plan, open: (cursor, onDuplicate) => listSourceFrom(plan.source, { extensions: plan.extensions, split: plan.split, stores, onDuplicate }, cursor) };
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

/**
 * A source's listing held open between passes, standing at the stored cursor `at`: a process
 * topping a run up reads on from where it stopped instead of opening the source again (a key
 * list would be re-read from its first line each time). Redis stays the truth: a listing whose
 * `at` is not the stored cursor (another process moved it) is closed and opened again there.
 */
export interface OpenListing {
  at: string | null;
  refs: AsyncIterator<{ ref: string; cursor: ListingCursor | null; at?: SampleLocator; shard?: string }>;
  /** Repeats dropped since the source's start (the stored count plus this listing's). */
  duplicates: number;
}

/** Open listings by run id, kept by a long-lived process (workers/listing-worker.ts). */
export class OpenListings {
  private readonly open = new Map<string, OpenListing>();

  /** Take the run's open listing if it stands at `cursor`; any other is closed. */
  async take(runId: string, cursor: string | null): Promise<OpenListing | undefined> {
    const held = this.open.get(runId);
    if (held && held.at === cursor) {
      this.open.delete(runId);
      return held;
    }
    await this.drop(runId);
    return undefined;
  }

  /** Keep a listing for the run's next pass. */
  keep(runId: string, listing: OpenListing): void {
    this.open.set(runId, listing);
  }

  /** Close the run's open listing (it is done, failed or gone). */
  async drop(runId: string): Promise<void> {
    const held = this.open.get(runId);
    this.open.delete(runId);
    await held?.refs.return?.()?.catch(() => undefined);
  }

  /** Close every open listing. */
  async close(): Promise<void> {
    for (const runId of [...this.open.keys()]) await this.drop(runId);
  }
}

export interface ListingPassOptions {
  spec: RunSpec;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** A resumable source, or refs only this process can list (listed whole, from the start, every pass). */
  source: ResumableSource | { refs: AsyncIterable<string | ListedInput>; duplicates?: () => number };
  /** Batches in flight at most; Infinity lists everything in one pass. */
  window: number;
  /** A self-calibrating run's warm-up: its batches' warm-up images go first, the ordinary jobs are held. */
  warmup: WarmupState | null;
  /** Skip the check for batches already done (the first pass of a run just created has none). */
  fresh: boolean;
  /** Where a long-lived process keeps the listing open between passes (absent: opened and closed by this pass). */
  openListings?: OpenListings;
  /** Batches per addBulk call. */
  jobsPerBulk?: number;
  onListed?: (images: number) => void;
}

export interface ListingPassResult {
  /** The whole source is listed (and the run's listing marked finished). */
  done: boolean;
  images: number;
  batches: number;
}

/** One pass of a run's listing (see the module comment); a failure of the source's own is a ListingFailedError, with the run marked failed. */
export async function listingPass(o: ListingPassOptions): Promise<ListingPassResult> {
  const { spec, tracker, queues } = o;
  const state = await tracker.listingState(spec.runId);
  if (!state) throw new Error(`run ${spec.runId} is unknown`);
  const resumable = 'open' in o.source;
  const cursor = resumable ? parseCursor(state.cursor) : null;
  // Without a cursor the listing starts over, and the batches it cuts again are skipped as queued or done.
  const start = cursor ? state : { images: 0, batches: 0, duplicates: 0 };
  if (state.listed) {
    await o.openListings?.drop(spec.runId);
    return { done: true, images: state.images, batches: state.batches };
  }
  const inFlight = Math.ceil(Math.max(0, state.images - state.final) / spec.batchSize);
  const room = o.window - inFlight;
  if (room <= 0) return { done: false, images: state.images, batches: state.batches };

  const held = cursor ? await o.openListings?.take(spec.runId, state.cursor) : undefined;
  const listing = held ?? openListing(o.source, cursor, start.duplicates);
  const first = spec.stages[0]!.name;
  const jobsPerBulk = o.jobsPerBulk ?? 100;
  const warmup = o.warmup;
  let pending: StageJob[] = [];
  let warmupJobs: StageJob[] = [];
  let batchRefs: ListedInput[] = [];
  // The cursor after the batch's last input: where a batch closed at a shard's end resumes.
  let lastCursor: ListingCursor | null = cursor;
  let images = start.images;
  let batches = start.batches;
  let warmupImages = 0;
  let closed = 0;
  // The cursor and duplicate count just after the last closed batch: where the next pass resumes.
  let at: { cursor: ListingCursor | null; duplicates: number } = { cursor, duplicates: listing.duplicates };

  const flush = async () => {
    if (warmup) {
      // Warm-up images go through every stage now; the ordinary jobs wait in Redis until the
      // threshold is decided from them (queue/threshold-decision.ts releases them).
      const todo = o.fresh ? warmupJobs : await filterNotDone(warmupJobs, tracker);
      await tracker.addWarmupBatches(
        spec.runId,
        warmupJobs.map((j) => j.batch),
      );
      await queues.addStageJobs(first, todo);
      await tracker.hold(spec.runId, pending);
    } else {
      // Batches whose first stage already finished must not run again (their jobs are gone).
      await queues.addStageJobs(first, o.fresh ? pending : await filterNotDone(pending, tracker));
    }
    // Saved only once its batches are queued: a pass killed before this lists them again, idempotently.
    await tracker.saveListing(spec.runId, {
      images,
      batches,
      duplicates: 'open' in o.source ? at.duplicates : 0,
      cursor: at.cursor ? JSON.stringify(at.cursor) : null,
    });
    o.onListed?.(images);
    pending = [];
    warmupJobs = [];
  };
  const closeBatch = (after: ListingCursor | null) => {
    const items: StageJob['items'] = batchRefs.map(({ ref, at }, pos) => ({
      ref,
      pos,
      ...(warmup && inWarmup(spec.runId, ref, warmup.cutoff) ? { warmup: true as const } : {}),
      ...(at ? { at } : {}),
    }));
    pending.push({ runId: spec.runId, batch: batches, stage: 0, items });
    const lane = items.filter((i) => i.warmup).map(({ warmup: _w, ...item }) => item);
    if (lane.length) warmupJobs.push({ runId: spec.runId, batch: batches, stage: 0, lane: 'warmup', items: lane });
    warmupImages += lane.length;
    batches += 1;
    closed += 1;
    batchRefs = [];
    at = { cursor: after, duplicates: listing.duplicates };
  };

  let keepOpen = false;
  try {
    for (;;) {
      const item = await nextListed(listing.refs);
      if (item.done) break;
      const { cursor: after, ...input } = item.value;
      // One job reads one shard (or a range of its samples): a new shard closes the batch.
      if (batchRefs.length > 0 && input.shard !== batchRefs[0]!.shard) {
        closeBatch(lastCursor);
        if (pending.length >= jobsPerBulk) await flush();
      }
      batchRefs.push(input);
      lastCursor = after;
      images += 1;
      if (batchRefs.length < spec.batchSize) continue;
      closeBatch(after);
      const full = closed >= room;
      if (pending.length >= jobsPerBulk || full) await flush();
      if (full) {
        // Stopped at a batch boundary, before reading further: the listing stands exactly at the saved cursor.
        keepOpen = o.openListings !== undefined && at.cursor !== null;
        if (keepOpen) o.openListings!.keep(spec.runId, { ...listing, at: JSON.stringify(at.cursor) });
        return { done: false, images, batches };
      }
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
  } finally {
    if (!keepOpen) await listing.refs.return?.().catch(() => undefined);
  }
  if (batchRefs.length > 0) closeBatch(null);
  await flush();

  const allDuplicates = 'open' in o.source ? listing.duplicates : (o.source.duplicates?.() ?? 0);
  if (await tracker.finishListing(spec.runId, images, batches, allDuplicates, warmup ? warmupImages : undefined)) await queues.queueMerge(spec.runId, tracker);
  // The warm-up may have finished while the listing went on (or be empty): then decide now.
  if (warmup && (await tracker.needsDecision(spec.runId))) await queueDecision(queues, spec);
  return { done: true, images, batches };
}

/** The run's warm-up, chosen by the first listing and kept in Redis, so a resumed listing splits the batches alike. */
export async function chooseRunWarmup(spec: RunSpec, tracker: RunTracker, relist: (() => AsyncIterable<string>) | undefined): Promise<WarmupState> {
  const held = await tracker.warmup(spec.runId);
  if (held) return held;
  if (!relist) throw new Error(`run ${spec.runId} is self-calibrating: submitRun needs relist() to choose its warm-up`);
  const settings = spec.selfCalibration!;
  const choice = await chooseWarmup(relist(), spec.runId, settings.warmup, settings.targetAgreement);
  return tracker.setWarmup(spec.runId, { images: choice.images, cutoff: choice.cutoff });
}

/** `source` opened at `cursor`, its repeats counted on from `duplicates`. */
function openListing(source: ListingPassOptions['source'], cursor: ListingCursor | null, duplicates: number): OpenListing {
  const counted = { at: null as string | null, duplicates };
  const items = 'open' in source ? source.open(cursor, () => void counted.duplicates++) : plainRefs(source.refs);
  return Object.assign(counted, { refs: items[Symbol.asyncIterator]() });
}

/** Refs (or sharded samples) with no cursor: a listing only its own process can continue, from the start. */
async function* plainRefs(refs: AsyncIterable<string | ListedInput>): AsyncIterable<ListedInput & { cursor: null }> {
  for await (const entry of refs) yield { ...asListed(entry), cursor: null };
}

/** An error of the source's own iteration, told apart from a failure to queue what it listed. */
class ListingError extends Error {}

/** The listing's next ref; an error the listing itself throws comes out as a ListingError. */
async function nextListed<T>(refs: AsyncIterator<T>): Promise<IteratorResult<T>> {
  try {
    return await refs.next();
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
