/**
 * Scheduled runs on BullMQ job schedulers. `schedule add` stores a run template (source,
 * output pattern, stages with their GMACs, metric, batch size) as the scheduler's job
 * template on the `schedules` queue; every firing is one job there, and the `scheduler` role
 * turns it into a new run: `{date}`/`{datetime}` become the firing time (UTC), and the run id
 * is unique per firing, so a retried firing resumes its own run instead of starting another.
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { ObjectStore } from '../pipeline/storage/object-store.js';
import type { Stores } from '../pipeline/storage/stores.js';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { listInputs, submissionSource } from '../producers/inputs/input-formats.js';
import { submitRun } from '../producers/submit-run.js';
import { type CascadeQueues, quiet } from '../queue/cascade-queues.js';
import { checkRankRun, RunSpec, RunSpecFields } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';
import { errorKind, failureFields, type WorkerLog } from './stage-worker.js';
import { CalibrationFrom } from '../pipeline/reviews/review-calibration-record.js';
import { calibrateFiring, type FiringCalibrationDeps } from './firing-calibration.js';

export const SCHEDULES_QUEUE = 'schedules';

/** Schedule names end up in run ids (`<name>-<firing ms>`), so they share the run-id alphabet. */
export const ScheduleName = z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'schedule names use letters, digits, _ and - (at most 40)');

/**
 * What each firing of a schedule submits; `source` and `out` may hold {date} and {datetime}.
 * `run.selfCalibration` (optional, so templates stored before it still parse) makes every firing
 * a self-calibrating run, its first stage's threshold DECIDED_AT_WARMUP.
 */
export const ScheduleTemplate = z.object({
  schedule: ScheduleName,
  source: z.string().min(1),
  out: z.string().min(1),
  /** File extensions the listing keeps. */
  extensions: z.array(z.string()),
  /** Batches each firing's run keeps in flight while it lists (absent in templates stored before it: the default). */
  window: z.number().int().positive().optional(),
  /** Bytes of first-stage job payload each firing's run keeps in flight at most (config `window.bytes`). */
  windowBytes: z.number().int().positive().optional(),
  run: RunSpecFields.omit({ runId: true, source: true, out: true, createdAt: true }).superRefine((run, ctx) => checkRankRun(run, ctx)),
  /** Firings may take over an output location an earlier run holds (a fixed `out` without {date}). */
  overwrite: z.boolean().optional(),
  /** Every firing certifies its threshold from the latest reviewed run under this location (docs/reviews.md). */
  calibrationFrom: CalibrationFrom.optional(),
});
export type ScheduleTemplate = z.infer<typeof ScheduleTemplate>;

/** When a schedule fires: a cron pattern (with optional time zone) or a fixed interval. */
export const ScheduleTiming = z.union([
  z.object({ cron: z.string().min(1), tz: z.string().optional() }).strict(),
  z.object({ every: z.number().int().positive() }).strict(),
]);
export type ScheduleTiming = z.infer<typeof ScheduleTiming>;

/** Replace {date} (YYYY-MM-DD) and {datetime} (YYYY-MM-DDTHH-MM-SSZ, no colons for S3 keys and file names) with `at` in UTC. */
export function expandDatePattern(pattern: string, at: Date): string {
  const iso = at.toISOString();
  return pattern.replaceAll('{date}', iso.slice(0, 10)).replaceAll('{datetime}', `${iso.slice(0, 19).replaceAll(':', '-')}Z`);
}

/** The run a firing at `firedAt` (ms since epoch) starts. */
export function runForFiring(t: ScheduleTemplate, firedAt: number): RunSpec {
  const at = new Date(firedAt);
  return RunSpec.parse({
    ...t.run,
    runId: `${t.schedule}-${firedAt}`,
    source: expandDatePattern(t.source, at),
    out: expandDatePattern(t.out, at),
    createdAt: at.toISOString(),
  });
}

/** A schedule as stored in Redis, for `schedule list`. */
export interface ScheduleInfo {
  name: string;
  cron: string | null;
  tz: string | null;
  every: number | null;
  /** Next firing (ms since epoch), when known. */
  next: number | null;
  source: string | null;
  out: string | null;
  /** The self-calibration every firing's run asks for; null for a fixed threshold. */
  selfCalibration: RunSpec['selfCalibration'] | null;
  /** Where every firing takes its calibration from (reviewed runs); null when it keeps the schedule's own. */
  calibrationFrom: CalibrationFrom | null;
}

/** Create or replace the schedule `template.schedule`. */
export async function upsertSchedule(queue: Queue, timing: ScheduleTiming, template: ScheduleTemplate): Promise<void> {
  const t = ScheduleTemplate.parse(template);
  const repeat = 'cron' in timing ? { pattern: timing.cron, ...(timing.tz ? { tz: timing.tz } : {}) } : { every: timing.every };
  await queue.upsertJobScheduler(t.schedule, repeat, {
    name: 'fire',
    data: t,
    opts: { attempts: 3, backoff: { type: 'exponential', delay: 5000 }, removeOnComplete: 100, removeOnFail: 100 },
  });
}

/** Every schedule on the queue, by name. */
export async function listSchedules(queue: Queue): Promise<ScheduleInfo[]> {
  const all = await queue.getJobSchedulers(0, -1, true);
  return all
    .map((s) => {
      const data = ScheduleTemplate.safeParse(s.template?.data);
      return {
        name: s.id ?? s.key,
        cron: s.pattern ?? null,
        tz: s.tz ?? null,
        every: s.every ?? null,
        next: s.next ?? null,
        source: data.success ? data.data.source : null,
        out: data.success ? data.data.out : null,
        selfCalibration: (data.success && data.data.run.selfCalibration) || null,
        calibrationFrom: (data.success && data.data.calibrationFrom) || null,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** What `removeSchedule` did: whether the schedule existed, and how many of its queued firings it cancelled. */
export interface ScheduleRemoval {
  removed: boolean;
  cancelled: number;
}

/**
 * Remove a schedule and cancel its firings that are queued but not started (waiting for a
 * scheduler process, or delayed for a retry): BullMQ removes only the scheduler and its next
 * delayed firing, and a firing already queued would still submit a run later. A firing being
 * submitted right now finishes; the scheduler role skips a firing whose schedule is gone.
 */
export async function removeSchedule(queue: Queue, name: string): Promise<ScheduleRemoval> {
  const removed = await queue.removeJobScheduler(name);
  let cancelled = 0;
  for (const job of await queue.getJobs(['wait', 'delayed', 'prioritized', 'waiting-children'], 0, -1)) {
    if (job.id?.startsWith(`repeat:${name}:`) || ScheduleTemplate.safeParse(job.data).data?.schedule === name) {
      // Taken by a scheduler process meanwhile: that one finds the schedule gone and skips it.
      await job.remove().then(
        () => cancelled++,
        () => undefined,
      );
    }
  }
  return { removed, cancelled };
}

/**
 * The slot a scheduler job fired for: BullMQ names its jobs `repeat:<scheduler>:<ms>` and keeps
 * the slot in opts.prevMillis; the job's timestamp (when it was queued) is the last resort.
 */
export function firingTime(job: Pick<Job, 'id' | 'opts' | 'timestamp'>): number {
  if (job.opts.prevMillis) return job.opts.prevMillis;
  const fromId = /^repeat:.+:(\d+)$/.exec(job.id ?? '')?.[1];
  return fromId ? Number(fromId) : job.timestamp;
}

export interface RunSchedulerOptions {
  connection: Redis;
  prefix: string;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** The process's stores, through which a firing's source is listed. */
  stores: Stores;
  /** The object store of a run's output location (claimed before its jobs are queued). */
  openOutput: (out: string) => ObjectStore;
  log: WorkerLog;
  /** What a firing of a schedule with --calibration-from scores the reviewed images with (absent: such firings fail). */
  calibration?: Omit<FiringCalibrationDeps, 'tracker' | 'open'>;
  /** Called when a firing's run is submitted, or when the firing failed for good (metrics). */
  onFiring?: (schedule: string, outcome: 'submitted' | 'failed') => void;
}

/**
 * The schedule a run id `<name>-<firing ms>` was fired by, or undefined for other run ids. A
 * firing time has at least 12 digits (ms since 1970, after 2001), so `--run-id batch-7` is no firing.
 */
export function scheduleOfRun(runId: string): string | undefined {
  const m = /^(.+)-\d{12,}$/.exec(runId);
  return m && ScheduleName.safeParse(m[1]).success ? m[1] : undefined;
}

/**
 * Per schedule on `queue`, when its newest finished run was merged (ms since epoch), read from
 * Redis: the fleet's truth, which survives restarts of the scheduler process. Schedules none of
 * whose runs has finished are left out.
 */
export async function lastScheduleSuccesses(queue: Queue, tracker: RunTracker): Promise<Record<string, number>> {
  const names = new Set((await listSchedules(queue)).map((s) => s.name));
  const newest = new Map<string, string[]>();
  for (const runId of await tracker.runIds()) {
    const schedule = scheduleOfRun(runId);
    if (schedule && names.has(schedule)) newest.set(schedule, [...(newest.get(schedule) ?? []), runId]);
  }
  const out: Record<string, number> = {};
  for (const [schedule, runIds] of newest) {
    // Newest firing first: the first merged one is the last success.
    for (const runId of runIds.sort((a, b) => firingOf(b) - firingOf(a))) {
      const mergedAt = (await tracker.progress(runId))?.mergedAt;
      if (mergedAt) {
        out[schedule] = Date.parse(mergedAt);
        break;
      }
    }
  }
  return out;
}

/** The firing time (ms) at the end of a scheduled run's id. */
function firingOf(runId: string): number {
  return Number(runId.slice(runId.lastIndexOf('-') + 1));
}

/** What a firing's run took from reviews, for the scheduler's log line ('' without --calibration-from). */
function describeReviewCalibration(spec: RunSpec): string {
  const r = spec.reviewCalibration;
  if (!r) return '';
  const reviews = r.run ? `${r.reviews} reviews of ${r.run} (reviews.jsonl sha256 ${r.reviewsSha256?.slice(0, 12)})` : 'no reviews';
  return r.certified
    ? `; calibrated from ${reviews}: ${r.metric} ≥ ${Number(r.threshold!.toPrecision(6))}`
    : `; calibration from ${reviews} refused (${r.refusal}): kept ${r.fallback}`;
}

/** The `scheduler` role: consumes firings and submits their runs. */
export class RunScheduler {
  readonly worker: Worker;
  // BullMQ never closes a connection it was given, so the worker owns and closes its own.
  private readonly connection: Redis;
  // Asks whether a firing's schedule still exists (on the shared connection: no blocking calls).
  private readonly schedules: Queue;

  constructor(private readonly o: RunSchedulerOptions) {
    this.connection = o.connection.duplicate();
    this.schedules = quiet(new Queue(SCHEDULES_QUEUE, { connection: o.connection, prefix: o.prefix }));
    this.worker = new Worker(SCHEDULES_QUEUE, (job) => this.process(job), { connection: this.connection, prefix: o.prefix, concurrency: 1 });
    this.worker.on('failed', (job, err) => {
      const fields = failureFields(job, err, 'scheduler');
      o.log(`scheduler: firing ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`, fields);
      const schedule = ScheduleTemplate.safeParse(job?.data);
      if (fields?.final && schedule.success) o.onFiring?.(schedule.data.schedule, 'failed');
    });
    this.worker.on('error', (err) => o.log(`scheduler: worker error: ${err.message}`, { level: 'warn', stage: 'scheduler', errorKind: errorKind(err), err }));
  }

  /** Submit the run of one firing (exposed for tests); resolves with its run id, or null when its schedule was removed. */
  async process(job: Job): Promise<string | null> {
    const template = ScheduleTemplate.parse(job.data);
    // Removed after this firing was queued (or between its attempts): `schedule remove` means no more runs.
    if (!(await this.schedules.getJobScheduler(template.schedule))) {
      this.o.log(`scheduler: ${template.schedule} was removed; firing ${job.id} submits nothing`, { level: 'warn', stage: 'scheduler' });
      return null;
    }
    const firedAt = firingTime(job);
    const spec = await this.firingSpec(template, firedAt);
    const result = await submitRun({
      spec,
      refs: submissionSource(spec.source, {
        extensions: template.extensions,
        columns: spec.columns,
        stores: this.o.stores,
      }),
      window: template.window,
      windowBytes: template.windowBytes,
      // A self-calibrating firing chooses its warm-up from a listing of its own.
      relist: () => listInputs(spec.source, { extensions: template.extensions, columns: spec.columns, stores: this.o.stores }),
      tracker: this.o.tracker,
      queues: this.o.queues,
      output: this.o.openOutput(spec.out),
      overwrite: template.overwrite,
    });
    this.o.onFiring?.(template.schedule, 'submitted');
    this.o.log(
      `scheduler: ${template.schedule} fired for ${new Date(firedAt).toISOString()}: run ${spec.runId} ${spec.source} → ${spec.out}, ${result.images} images in ${result.batches} batches${result.listing === 'continues' ? ' so far' : ''}${describeReviewCalibration(spec)}`,
    );
    return spec.runId;
  }

  /**
   * The run a firing submits. With --calibration-from its threshold comes from the latest reviewed
   * run, once: a retried firing resumes the spec its first attempt stored, whatever was reviewed since.
   */
  private async firingSpec(template: ScheduleTemplate, firedAt: number): Promise<RunSpec> {
    const spec = runForFiring(template, firedAt);
    if (!template.calibrationFrom) return spec;
    const stored = await this.o.tracker.spec(spec.runId);
    if (stored) return stored;
    if (!this.o.calibration) throw new Error(`schedule ${template.schedule} calibrates from reviews, but this scheduler cannot open models`);
    return calibrateFiring(spec, template.calibrationFrom, { ...this.o.calibration, tracker: this.o.tracker, open: this.o.openOutput });
  }

  /** Stop taking firings; waits for a submission in progress. */
  async close(): Promise<void> {
    await this.worker.close();
    await this.schedules.close();
    this.connection.disconnect();
  }
}
