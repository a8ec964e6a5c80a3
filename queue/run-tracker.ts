/**
 * Run state in Redis: the run spec, listing progress, per-stage counters, and exactly-once
 * completion detection. Counts move only when a part id is first recorded, so retried or
 * duplicated jobs never count twice. Redis holds counters per run, never per-image results.
 */
import type { Redis } from 'ioredis';
import { parsePartId, partId, RunSpec } from './jobs.js';
import { DEFAULT_PRICES } from '../config/schema.js';
import { type PartCost, type RunCost, runCost } from '../pipeline/cost/run-cost.js';
import { assertClusterPrefix } from './redis-connection.js';

// Shared tail of both scripts: the run is complete once listing is done, every listed image has
// a final row and every audit the parts promised has been recorded. Returns 1 at most until the
// merge is queued. Each script sets NOW (the current time, ISO) before it.
const COMPLETION_CHECK = `
local state = redis.call('HMGET', KEYS[1], 'listed', 'total', 'final', 'mergeQueued', 'auditsExpected', 'auditsDone', 'selfCalibrating', 's0:parts', 'batches')
-- A self-calibrating run's warm-up rows can complete every image before the first stage's ordinary
-- part of a batch holding only warm-up images is written: the merge reads that part, so wait for all.
local partsIn = state[7] ~= '1' or tonumber(state[8] or '0') >= tonumber(state[9] or '0')
if state[1] == '1' and partsIn and tonumber(state[2]) == tonumber(state[3] or '0') and tonumber(state[6] or '0') >= tonumber(state[5] or '0') then
  redis.call('HSETNX', KEYS[1], 'completedAt', NOW)
  if state[4] ~= '1' then return 1 end
end
return 0
`;

// The run hash field counting one kind of error row is this plus the kind (e.g. `errorKind:forbidden`).
const ERROR_KIND_FIELD = 'errorKind:';

// A part is counted once: SETBIT on its kind's bitmap of batches returns the old bit, so only the
// first call sees 0. Before bitmaps the ids were members of one set (KEYS[3]); a part counted there
// by an older version stays counted.
const FIRST_COUNT = `(redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 and redis.call('SETBIT', KEYS[2], ARGV[2], 1) == 0)`;

// KEYS: run hash, the part kind's done bitmap, the legacy done set, in-flight batches hash (HOLD_BYTES). ARGV: part id ('' = only
// check), its batch, final images, stage, images, accepted, forwarded, errors, now (ISO), audits
// the part sends to the last stage,
// '1' for a warm-up part (its final rows also count as warm-up rows), '1' for a first-stage
// ordinary part, then the part's cost ('' = none): seconds, decode seconds, infer seconds, images
// decoded, images inferred, worker class, then pairs of error kind and its error rows in the part.
// Returns 1 when the run is complete and its merge has not been queued yet.
const FINISH_PART = `
local NOW = ARGV[9]
if ARGV[1] ~= '' and ${FIRST_COUNT} then
  redis.call('HINCRBY', KEYS[1], 'final', ARGV[3])
  if ARGV[11] == '1' then redis.call('HINCRBY', KEYS[1], 'warmupFinal', ARGV[3]) end
  if ARGV[12] == '1' then redis.call('HINCRBY', KEYS[1], 's0:parts', 1) end
  local s = 's' .. ARGV[4] .. ':'
  redis.call('HINCRBY', KEYS[1], s .. 'images', ARGV[5])
  redis.call('HINCRBY', KEYS[1], s .. 'accepted', ARGV[6])
  redis.call('HINCRBY', KEYS[1], s .. 'forwarded', ARGV[7])
  redis.call('HINCRBY', KEYS[1], s .. 'errors', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'auditsExpected', ARGV[10] or 0)
  if ARGV[13] ~= '' then
    redis.call('HINCRBYFLOAT', KEYS[1], s .. 'cost', ARGV[13])
    redis.call('HINCRBYFLOAT', KEYS[1], s .. 'costDecode', ARGV[14])
    redis.call('HINCRBYFLOAT', KEYS[1], s .. 'costInfer', ARGV[15])
    redis.call('HINCRBY', KEYS[1], s .. 'decoded', ARGV[16])
    redis.call('HINCRBY', KEYS[1], s .. 'costInferred', ARGV[17])
    redis.call('HSET', KEYS[1], s .. 'class', ARGV[18])
  elseif tonumber(ARGV[5]) > tonumber(ARGV[8]) then
    redis.call('HINCRBY', KEYS[1], s .. 'costUnknown', 1)
  end
  for i = 19, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[1], '${ERROR_KIND_FIELD}' .. ARGV[i], ARGV[i + 1]) end
  -- A batch held under the byte bound (HOLD_BYTES) frees its bytes when its last image is final.
  local batch = string.match(ARGV[1], '^b(%d+)s%d+$')
  if batch and redis.call('HEXISTS', KEYS[4], 'r' .. batch) == 1 then
    if redis.call('HINCRBY', KEYS[4], 'r' .. batch, -tonumber(ARGV[3])) <= 0 then
      redis.call('HINCRBY', KEYS[1], 'bytesInFlight', -tonumber(redis.call('HGET', KEYS[4], 'b' .. batch)))
      redis.call('HDEL', KEYS[4], 'r' .. batch, 'b' .. batch)
    end
  end
end
${COMPLETION_CHECK}`;

// KEYS: run hash, first-stage done bitmap, in-flight batches hash, legacy done set. ARGV: triples of
// batch, images, payload bytes.
// Hold each batch's first-stage payload bytes in the run's bytesInFlight until FINISH_PART sees its
// last image final: once per batch (a batch listed again after a kill is already held), and never
// for a batch whose first stage was already counted (listed again after it finished). Run before
// the batches are queued, so no part can finish before its batch is held.
const HOLD_BYTES = `
for i = 1, #ARGV, 3 do
  local b = ARGV[i]
  local counted = redis.call('GETBIT', KEYS[2], b) == 1 or redis.call('SISMEMBER', KEYS[4], 'b' .. b .. 's0') == 1
  if not counted and redis.call('HSETNX', KEYS[3], 'r' .. b, ARGV[i + 1]) == 1 then
    redis.call('HSET', KEYS[3], 'b' .. b, ARGV[i + 2])
    redis.call('HINCRBY', KEYS[1], 'bytesInFlight', ARGV[i + 2])
  end
end
return 0
`;

// KEYS: run hash. ARGV: images listed, batches, duplicates dropped, cursor JSON ('' = none: a
// listing that cannot resume elsewhere). Listing only moves forward: a second lister of the same
// run (a resubmission beside the top-up job) lists the same batches, and the later save of an
// earlier position is ignored. Returns 1 when it saved.
const SAVE_LISTING = `
if redis.call('HGET', KEYS[1], 'listed') == '1' then return 0 end
local batches = tonumber(redis.call('HGET', KEYS[1], 'batches') or '0')
if tonumber(ARGV[2]) < batches then return 0 end
redis.call('HSET', KEYS[1], 'listedImages', ARGV[1], 'batches', ARGV[2], 'duplicates', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'cursor', ARGV[4]) end
return 1
`;

// KEYS: run hash, the audits' done bitmap, the legacy done set. ARGV: audit id, its batch, audited images, agreeing, now (ISO).
// Audits have their own counters so they never count as final rows; the id makes it once only.
const FINISH_AUDIT = `
local NOW = ARGV[5]
if ${FIRST_COUNT} then
  redis.call('HINCRBY', KEYS[1], 'auditsDone', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'auditsAgreeing', ARGV[4])
end
${COMPLETION_CHECK}`;

/** Live audit counters of a run: audits promised by counted parts, recorded so far, and agreeing. */
export interface AuditProgress {
  expected: number;
  done: number;
  agreeing: number;
}

export interface PartCounts {
  images: number;
  accepted: number;
  forwarded: number;
  errors: number;
}

/** A self-calibrating run's warm-up: its size and the cutoff that selects it (pipeline/warmup-sample.ts). */
export interface WarmupState {
  images: number;
  cutoff: number;
}

/** Live state of a self-calibrating run's warm-up and decision. */
export interface SelfCalibrationProgress {
  /** The warm-up the listing chose; null until then. */
  warmup: WarmupState | null;
  /** Warm-up images the listing queued (null until it finished). */
  warmupTotal: number | null;
  /** Warm-up images with their final row. */
  warmupDone: number;
  /** The stored decision (JSON, see pipeline/self-calibration.ts), null until made. */
  decision: string | null;
  /** Whether the held ordinary batches were released to the first stage. */
  released: boolean;
}

/** Where a run's listing stands (what a listing pass resumes from). */
export interface ListingState {
  /** The listing's cursor (JSON, producers/listing-cursor.ts), null before the first save or for a listing that cannot resume elsewhere. */
  cursor: string | null;
  images: number;
  batches: number;
  duplicates: number;
  /** Images with their final row: `images - final` are in flight. */
  final: number;
  listed: boolean;
  failedReason: string | null;
  /** The first job of the run that failed for good (`recordJobFailure`), until `cascade retry` clears it; null: none. */
  jobFailure: string | null;
  /** How a process other than the submitter opens the source again (JSON, producers/listing-cursor.ts ListingPlan); null for a listing only its submitter can continue. */
  plan: string | null;
  /** Batches the run keeps in flight at most; null: no bound (everything is queued at once). */
  window: number | null;
  /** Bytes of first-stage job payload the run keeps in flight at most (`window.bytes`); null: no byte bound. */
  windowBytes: number | null;
  /** Bytes of first-stage job payload of the batches listed under the byte bound and not yet final (see HOLD_BYTES). */
  bytesInFlight: number;
}

/** A snapshot of a run's progress. */
export interface RunProgress {
  spec: RunSpec;
  listed: boolean;
  total: number | null;
  /** Images listed so far (equals total once listing is done). */
  listedImages: number;
  batches: number;
  /** Key-list lines dropped at listing because their key was already listed. */
  duplicates: number;
  /** Batches the run keeps in flight at most while it lists (null: all queued at once). */
  window: number | null;
  /** As in ListingState: the byte bound, the bytes held under it, the cursor and the plan (JSON); absent: none. */
  windowBytes?: number | null;
  bytesInFlight?: number;
  cursor?: string | null;
  plan?: string | null;
  final: number;
  stages: PartCounts[];
  /** Final error rows by kind (ImageErrorKind), over every stage; kinds without rows are absent. */
  errorsByKind: Record<string, number>;
  /** Audit sampling counters (all zero on runs without audits). */
  audit: AuditProgress;
  /** Self-calibrating runs only. */
  selfCalibration?: SelfCalibrationProgress;
  /** Measured cost of the parts counted so far against big alone on the same images (pipeline/cost/run-cost.ts). */
  cost: RunCost;
  startedAt: string | null;
  completedAt: string | null;
  mergedAt: string | null;
  mergeError: string | null;
  /** Why the run failed before any merge (its listing failed); null or absent otherwise. */
  failedReason?: string | null;
  /** Jobs of the run (batches, audits, its threshold decision) that failed for good, all attempts used; absent on old snapshots. */
  failedJobs?: number;
  /** The first of those jobs and its last error, e.g. `r1-b3-s0: ENOSPC …`; null when none. */
  jobFailure?: string | null;
}

/** Reads and updates the Redis state of runs under one key prefix. */
export class RunTracker {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    // The Lua scripts touch two keys of a run; on a cluster only a hash-tagged prefix keeps them in one slot.
    assertClusterPrefix(redis, prefix);
    redis.defineCommand('cascadeFinishPart', { numberOfKeys: 4, lua: FINISH_PART });
    redis.defineCommand('cascadeHoldBytes', { numberOfKeys: 4, lua: HOLD_BYTES });
    redis.defineCommand('cascadeFinishAudit', { numberOfKeys: 3, lua: FINISH_AUDIT });
    redis.defineCommand('cascadeSaveListing', { numberOfKeys: 1, lua: SAVE_LISTING });
  }

  private runKey(runId: string): string {
    return `${this.prefix}:run:${runId}`;
  }
  /** A part kind's bitmap of counted batches (jobs.ts parsePartId: `s0`, `w1`, `audit`, …): one bit per batch. */
  private doneKey(runId: string, kind: string): string {
    return `${this.prefix}:run:${runId}:done:${kind}`;
  }
  /** The set of counted part ids that versions before the bitmaps kept; read only, so their counts stand. */
  private legacyDoneKey(runId: string): string {
    return `${this.prefix}:run:${runId}:done`;
  }
  /** The done bitmap and bit of a part id. */
  private doneBit(runId: string, id: string): { key: string; batch: number } {
    const { batch, kind } = parsePartId(id);
    return { key: this.doneKey(runId, kind), batch };
  }

  private heldKey(runId: string): string {
    return `${this.prefix}:run:${runId}:held`;
  }
  private failedJobsKey(runId: string): string {
    return `${this.prefix}:run:${runId}:failedJobs`;
  }
  private inFlightKey(runId: string): string {
    return `${this.prefix}:run:${runId}:inFlight`;
  }
  private warmupBatchesKey(runId: string): string {
    return `${this.prefix}:run:${runId}:warmupBatches`;
  }

  /** Record a new run; returns false (and changes nothing) if the run id already exists. */
  async create(spec: RunSpec): Promise<boolean> {
    const created = await this.redis.hsetnx(this.runKey(spec.runId), 'spec', JSON.stringify(spec));
    if (created) await this.redis.hset(this.runKey(spec.runId), 'startedAt', new Date().toISOString(), ...(spec.selfCalibration ? ['selfCalibrating', 1] : []));
    await this.redis.sadd(`${this.prefix}:runs`, spec.runId);
    return created === 1;
  }

  /** The stored spec of a run, or null when unknown. */
  async spec(runId: string): Promise<RunSpec | null> {
    const raw = await this.redis.hget(this.runKey(runId), 'spec');
    return raw ? RunSpec.parse(JSON.parse(raw)) : null;
  }

  /**
   * What a stage job needs first: the run's spec (null when unknown) and whether its part was
   * already counted, read in one pipelined round trip (both keys share the run's slot; no MULTI, which would add two commands).
   */
  async jobContext(runId: string, partId: string): Promise<{ spec: RunSpec | null; partDone: boolean }> {
    const { key, batch } = this.doneBit(runId, partId);
    const replies = await this.redis.pipeline().hget(this.runKey(runId), 'spec').getbit(key, batch).sismember(this.legacyDoneKey(runId), partId).exec();
    if (!replies) throw new Error(`run ${runId}: the pipelined read of its spec returned nothing`);
    for (const [err] of replies) if (err) throw err;
    const raw = replies[0]![1] as string | null;
    return { spec: raw ? RunSpec.parse(JSON.parse(raw)) : null, partDone: replies[1]![1] === 1 || replies[2]![1] === 1 };
  }

  /** Whether a part (batch × stage) has already been counted. */
  async isPartDone(runId: string, partId: string): Promise<boolean> {
    const { key, batch } = this.doneBit(runId, partId);
    const [bit, legacy] = await Promise.all([this.redis.getbit(key, batch), this.redis.sismember(this.legacyDoneKey(runId), partId)]);
    return bit === 1 || legacy === 1;
  }

  /**
   * Which parts of one kind (`s0`, `w1`, `audit`: jobs.ts parsePartId) of batches [from, to) are
   * counted, read as one range of the kind's bitmap: what a merge while the run labels reads first.
   * The set older versions kept is not consulted: a run counted by one is merged at its end.
   */
  async countedBatches(runId: string, kind: string, from: number, to: number): Promise<(batch: number) => boolean> {
    if (to <= from) return () => false;
    const first = from >> 3;
    const bytes = await this.redis.getrangeBuffer(this.doneKey(runId, kind), first, (to - 1) >> 3);
    // SETBIT's offset 0 is the high bit of byte 0.
    return (batch) => batch >= from && batch < to && (((bytes[(batch >> 3) - first] ?? 0) >> (7 - (batch & 7))) & 1) === 1;
  }

  /** Record why the run cannot complete (its listing failed): `cascade status` shows it as failed with this reason. */
  async markFailed(runId: string, reason: string): Promise<void> {
    await this.redis.hset(this.runKey(runId), 'failedReason', reason);
  }

  /** Forget a recorded failure: a resubmission is listing the run again. */
  async clearFailure(runId: string): Promise<void> {
    await this.redis.hdel(this.runKey(runId), 'failedReason');
  }

  /**
   * Note a job of the run that failed for good (every attempt used, or unrecoverable): the run can
   * no longer complete by itself, so its view says failed until `cascade retry` re-queues it.
   * Once per job id; the first failure's reason is kept. Unknown runs are left alone.
   */
  async recordJobFailure(runId: string, jobId: string, reason: string): Promise<void> {
    if (!(await this.redis.hexists(this.runKey(runId), 'spec'))) return;
    await this.redis.sadd(this.failedJobsKey(runId), jobId);
    await this.redis.hsetnx(this.runKey(runId), 'jobFailure', `${jobId}: ${reason.split('\n')[0]}`);
  }

  /** Forget the run's failed jobs (and a failed merge): `cascade retry` has put them back in their queues. */
  async clearJobFailures(runId: string): Promise<void> {
    await this.redis.del(this.failedJobsKey(runId));
    await this.redis.hdel(this.runKey(runId), 'jobFailure', 'mergeError');
  }

  /**
   * Record how the run's source is listed again elsewhere, and its window, once: the first
   * submission's stand (a resubmission with another window does not change a run in flight).
   */
  async setListingPlan(runId: string, plan: string | null, window: number | null, windowBytes: number | null = null): Promise<void> {
    if (plan !== null) await this.redis.hsetnx(this.runKey(runId), 'listing', plan);
    const first = window !== null && (await this.redis.hsetnx(this.runKey(runId), 'window', window)) === 1;
    // With the window only: a resubmission with a byte bound does not add one to a run in flight.
    if (first && windowBytes !== null) await this.redis.hset(this.runKey(runId), 'windowBytes', windowBytes);
  }

  /** Where the run's listing stands, or null if the run is unknown. */
  async listingState(runId: string): Promise<ListingState | null> {
    const [spec, cursor, images, batches, duplicates, final, listed, failedReason, jobFailure, plan, window, windowBytes, bytesInFlight] =
      await this.redis.hmget(
        this.runKey(runId),
        'spec',
        'cursor',
        'listedImages',
        'batches',
        'duplicates',
        'final',
        'listed',
        'failedReason',
        'jobFailure',
        'listing',
        'window',
        'windowBytes',
        'bytesInFlight',
      );
    if (!spec) return null;
    return {
      cursor: cursor || null,
      images: Number(images ?? 0),
      batches: Number(batches ?? 0),
      duplicates: Number(duplicates ?? 0),
      final: Number(final ?? 0),
      listed: listed === '1',
      failedReason: failedReason || null,
      jobFailure: jobFailure || null,
      plan: plan || null,
      window: window ? Number(window) : null,
      windowBytes: windowBytes ? Number(windowBytes) : null,
      bytesInFlight: Number(bytesInFlight ?? 0),
    };
  }

  /**
   * Save listing progress after its batches were queued: the counts and the cursor just after the
   * last queued batch's last ref. Never moves back (see SAVE_LISTING); returns whether it saved.
   */
  async saveListing(runId: string, at: { images: number; batches: number; duplicates: number; cursor: string | null }): Promise<boolean> {
    const run = this.redis as unknown as { cascadeSaveListing(k: string, ...a: Array<string | number>): Promise<number> };
    return (await run.cascadeSaveListing(this.runKey(runId), at.images, at.batches, at.duplicates, at.cursor ?? '')) === 1;
  }

  /**
   * Hold the first-stage payload bytes of batches about to be queued under the run's byte bound,
   * until their last image is final (see HOLD_BYTES): what `bytesInFlight` counts.
   */
  async holdBytes(runId: string, batches: ReadonlyArray<{ batch: number; images: number; bytes: number }>): Promise<void> {
    if (batches.length === 0) return;
    const run = this.redis as unknown as { cascadeHoldBytes(k1: string, k2: string, k3: string, k4: string, ...a: Array<string | number>): Promise<number> };
    await run.cascadeHoldBytes(
      this.runKey(runId),
      this.doneBit(runId, partId(0, 0)).key,
      this.inFlightKey(runId),
      this.legacyDoneKey(runId),
      ...batches.flatMap((b) => [b.batch, b.images, b.bytes]),
    );
  }

  /**
   * Mark listing complete with its totals; returns true if that completed the run. A self-calibrating
   * run's listing also gives the warm-up images it queued: the warm-up is complete when all have rows.
   */
  async finishListing(runId: string, total: number, batches: number, duplicates = 0, warmupImages?: number): Promise<boolean> {
    const warmup = warmupImages === undefined ? [] : ['warmupTotal', warmupImages];
    await this.redis.hset(this.runKey(runId), 'total', total, 'batches', batches, 'listedImages', total, 'duplicates', duplicates, ...warmup, 'listed', 1);
    return this.finishPart(runId, null);
  }

  /**
   * Count a finished part once; returns true when the caller must queue the run's merge. `lane`
   * (self-calibrating runs): a warm-up part, or the first stage's ordinary part of a batch.
   * `errorsByKind`: the part's error rows by kind.
   */
  async finishPart(
    runId: string,
    part: {
      id: string;
      stage: number;
      final: number;
      counts: PartCounts;
      audits?: number;
      lane?: 'warmup' | 'first';
      cost?: PartCost;
      errorsByKind?: Record<string, number>;
    } | null,
  ): Promise<boolean> {
    const c = part?.counts ?? { images: 0, accepted: 0, forwarded: 0, errors: 0 };
    const cost = part?.cost;
    const done = this.doneBit(runId, part?.id ?? partId(0, 0));
    const args = [
      part?.id ?? '',
      done.batch,
      part?.final ?? 0,
      part?.stage ?? 0,
      c.images,
      c.accepted,
      c.forwarded,
      c.errors,
      new Date().toISOString(),
      part?.audits ?? 0,
      part?.lane === 'warmup' ? 1 : 0,
      part?.lane === 'first' ? 1 : 0,
      ...(cost ? [cost.seconds, cost.decodeSeconds, cost.inferSeconds, cost.decoded, c.images - c.errors, cost.workerClass] : ['', 0, 0, 0, 0, '']),
      ...Object.entries(part?.errorsByKind ?? {}).flatMap(([kind, n]) => (n > 0 ? [kind, n] : [])),
    ];
    const run = this.redis as unknown as { cascadeFinishPart(k1: string, k2: string, k3: string, k4: string, ...a: Array<string | number>): Promise<number> };
    return (await run.cascadeFinishPart(this.runKey(runId), done.key, this.legacyDoneKey(runId), this.inFlightKey(runId), ...args)) === 1;
  }

  /**
   * Count a finished audit once (its id is e.g. `b7audit`); returns true when the caller must
   * queue the run's merge. Audits never add to the final-row counter.
   */
  async finishAudit(runId: string, audit: { id: string; audited: number; agreeing: number }): Promise<boolean> {
    const done = this.doneBit(runId, audit.id);
    const run = this.redis as unknown as { cascadeFinishAudit(k1: string, k2: string, k3: string, ...a: Array<string | number>): Promise<number> };
    return (
      (await run.cascadeFinishAudit(
        this.runKey(runId),
        done.key,
        this.legacyDoneKey(runId),
        audit.id,
        done.batch,
        audit.audited,
        audit.agreeing,
        new Date().toISOString(),
      )) === 1
    );
  }

  /** Live audit counters of a run (for `cascade status`), or null if the run is unknown. */
  async auditProgress(runId: string): Promise<AuditProgress | null> {
    const [spec, expected, done, agreeing] = await this.redis.hmget(this.runKey(runId), 'spec', 'auditsExpected', 'auditsDone', 'auditsAgreeing');
    if (!spec) return null;
    return { expected: Number(expected ?? 0), done: Number(done ?? 0), agreeing: Number(agreeing ?? 0) };
  }

  /**
   * Record the warm-up a listing chose, once: the first listing's choice stands (a resumed or
   * concurrent listing gets it back), so every submitter splits the batches alike.
   */
  async setWarmup(runId: string, warmup: WarmupState): Promise<WarmupState> {
    await this.redis.hsetnx(this.runKey(runId), 'warmup', JSON.stringify(warmup));
    return (await this.warmup(runId))!;
  }

  /** The warm-up a listing chose, or null. */
  async warmup(runId: string): Promise<WarmupState | null> {
    const raw = await this.redis.hget(this.runKey(runId), 'warmup');
    return raw ? (JSON.parse(raw) as WarmupState) : null;
  }

  /** Note batches that hold warm-up images (the decision reads their warm-up parts). */
  async addWarmupBatches(runId: string, batches: number[]): Promise<void> {
    if (batches.length) await this.redis.sadd(this.warmupBatchesKey(runId), ...batches);
  }

  /** The batches that hold warm-up images, in order. */
  async warmupBatches(runId: string): Promise<number[]> {
    return (await this.redis.smembers(this.warmupBatchesKey(runId))).map(Number).sort((a, b) => a - b);
  }

  /** Keep the first stage's ordinary jobs of a self-calibrating run until its threshold is decided. */
  async hold(runId: string, jobs: ReadonlyArray<{ batch: number }>): Promise<void> {
    if (jobs.length) await this.redis.hset(this.heldKey(runId), ...jobs.flatMap((j) => [String(j.batch), JSON.stringify(j)]));
  }

  /** The held jobs (raw JSON), a page at a time. */
  async *heldJobs(runId: string): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.heldKey(runId), cursor, 'COUNT', 500);
      cursor = next;
      const values = flat.filter((_, i) => i % 2 === 1);
      if (values.length) yield values;
    } while (cursor !== '0');
  }

  /**
   * Whether the warm-up is complete (listing done, every warm-up image has its final row) and the
   * held jobs are not released yet: then a threshold decision must run (again, after a crash).
   */
  async needsDecision(runId: string): Promise<boolean> {
    const [listed, total, done, released] = await this.redis.hmget(this.runKey(runId), 'listed', 'warmupTotal', 'warmupFinal', 'released');
    if (listed !== '1' || total === null || released === '1') return false;
    return Number(done ?? 0) >= Number(total);
  }

  /** Store a run's threshold decision unless one is stored; returns the stored one (the first decision wins) and whether it was this one. */
  async decide(runId: string, decision: string): Promise<{ stored: string; won: boolean }> {
    const won = (await this.redis.hsetnx(this.runKey(runId), 'decision', decision)) === 1;
    return { stored: (await this.decision(runId))!, won };
  }

  /** The stored threshold decision (JSON), or null before it is made. */
  async decision(runId: string): Promise<string | null> {
    return this.redis.hget(this.runKey(runId), 'decision');
  }

  /** Note that the held jobs were queued, and drop them. */
  async markReleased(runId: string): Promise<void> {
    await this.redis.hset(this.runKey(runId), 'released', 1);
    await this.redis.del(this.heldKey(runId));
  }

  /** Whether the run is complete (every listed image has its final row and every promised audit is in). */
  async isComplete(runId: string): Promise<boolean> {
    return (await this.redis.hexists(this.runKey(runId), 'completedAt')) === 1;
  }

  /** Note that the merge job has been queued, so later completions do not queue it again. */
  async markMergeQueued(runId: string): Promise<void> {
    await this.redis.hset(this.runKey(runId), 'mergeQueued', 1);
  }

  /** Store the merged summary and the merge time. */
  async markMerged(runId: string, summaryJson: string): Promise<void> {
    await this.redis.hset(this.runKey(runId), 'mergedAt', new Date().toISOString(), 'summary', summaryJson);
    await this.redis.hdel(this.runKey(runId), 'mergeError');
  }

  /** Record that the merge failed for good. */
  async markMergeFailed(runId: string, message: string): Promise<void> {
    await this.redis.hset(this.runKey(runId), 'mergeError', message);
  }

  /** The merged summary JSON, once merged. */
  async summary(runId: string): Promise<string | null> {
    return this.redis.hget(this.runKey(runId), 'summary');
  }

  /** The stored spec of a run and whether it is merged (one read); null when unknown. */
  async specAndMerged(runId: string): Promise<{ spec: RunSpec; merged: boolean } | null> {
    const [raw, mergedAt] = await this.redis.hmget(this.runKey(runId), 'spec', 'mergedAt');
    return raw ? { spec: RunSpec.parse(JSON.parse(raw)), merged: mergedAt !== null } : null;
  }

  /** Ids of every run recorded under this prefix (for `cascade status`). */
  async runIds(): Promise<string[]> {
    return this.redis.smembers(`${this.prefix}:runs`);
  }

  /** Current progress of a run, or null if unknown. */
  async progress(runId: string): Promise<RunProgress | null> {
    const [h, failedJobs] = await Promise.all([this.redis.hgetall(this.runKey(runId)), this.redis.scard(this.failedJobsKey(runId))]);
    if (!h.spec) return null;
    const spec = RunSpec.parse(JSON.parse(h.spec));
    const num = (k: string) => Number(h[k] ?? 0);
    return {
      spec,
      listed: h.listed === '1',
      total: h.total === undefined ? null : Number(h.total),
      listedImages: num('listedImages'),
      batches: num('batches'),
      duplicates: num('duplicates'),
      window: h.window ? Number(h.window) : null,
      windowBytes: h.windowBytes ? Number(h.windowBytes) : null,
      bytesInFlight: num('bytesInFlight'),
      cursor: h.cursor || null,
      plan: h.listing || null,
      final: num('final'),
      stages: spec.stages.map((_, i) => ({
        images: num(`s${i}:images`),
        accepted: num(`s${i}:accepted`),
        forwarded: num(`s${i}:forwarded`),
        errors: num(`s${i}:errors`),
      })),
      errorsByKind: Object.fromEntries(
        Object.entries(h)
          .filter(([k]) => k.startsWith(ERROR_KIND_FIELD))
          .map(([k, v]) => [k.slice(ERROR_KIND_FIELD.length), Number(v)] as const)
          .sort(([a], [b]) => a.localeCompare(b)),
      ),
      audit: { expected: num('auditsExpected'), done: num('auditsDone'), agreeing: num('auditsAgreeing') },
      cost: runCost(
        spec.stages.map((st, i) => ({
          name: st.name,
          inferred: num(`s${i}:costInferred`),
          seconds: num(`s${i}:cost`),
          decodeSeconds: num(`s${i}:costDecode`),
          inferSeconds: num(`s${i}:costInfer`),
          decoded: num(`s${i}:decoded`),
          workerClass: h[`s${i}:class`] === 'gpu' ? 'gpu' : h[`s${i}:class`] === 'cpu' ? 'cpu' : null,
          unknownParts: num(`s${i}:costUnknown`),
        })),
        num('s0:images') - num('s0:errors'),
        spec.prices ?? DEFAULT_PRICES,
      ),
      ...(spec.selfCalibration
        ? {
            selfCalibration: {
              warmup: h.warmup ? (JSON.parse(h.warmup) as WarmupState) : null,
              warmupTotal: h.warmupTotal === undefined ? null : Number(h.warmupTotal),
              warmupDone: num('warmupFinal'),
              decision: h.decision ?? null,
              released: h.released === '1',
            },
          }
        : {}),
      startedAt: h.startedAt ?? null,
      completedAt: h.completedAt ?? null,
      mergedAt: h.mergedAt ?? null,
      mergeError: h.mergeError ?? null,
      failedReason: h.failedReason ?? null,
      failedJobs,
      jobFailure: h.jobFailure ?? null,
    };
  }
}
