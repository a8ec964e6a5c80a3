/**
 * `cascade schedule add|list|remove`: recurring runs on BullMQ job schedulers. `add` resolves
 * the cascade (models, GMACs, threshold, metric, batch size) once, now, and stores it with the
 * schedule; a process with the `scheduler` role submits a run at each firing. With
 * --target-agreement every firing is a self-calibrating run with its own warm-up (seeded by its
 * run id), so a night whose images drifted gets the threshold its own warm-up certifies.
 */
import { Queue } from 'bullmq';
import { quiet } from '../../queue/cascade-queues.js';
import { ConfigError } from '../../config/load-config.js';
import { type CascadeFlags, checkCalibration, loadCascadeConfig } from '../cascade-flags.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { planningModels, planRun } from '../../producers/plan-run.js';
import type { RunSpec } from '../../queue/jobs.js';
import { defaultWarmupImages } from '../../pipeline/warmup-sample.js';
import { connectRedisChecked } from '../../queue/redis-connection.js';
import {
  ScheduleName,
  type ScheduleTiming,
  SCHEDULES_QUEUE,
  listSchedules,
  removeSchedule,
  upsertSchedule,
  type ScheduleInfo,
  type ScheduleTemplate,
} from '../../workers/run-scheduler.js';
import { fleetSettings } from '../fleet-settings.js';
import { DEFAULT_DELTA, parseSelfCalibration, type SelfCalibrationFlags } from '../self-calibration-flags.js';
import type { CalibrationFrom } from '../../pipeline/reviews/review-calibration-record.js';
import { describeRouting } from '../../workers/firing-calibration.js';
import { requireRedisUrl } from './submit.js';

export interface ScheduleAddOptions extends CascadeFlags, SelfCalibrationFlags {
  cron?: string;
  tz?: string;
  every?: number;
  source: string;
  out: string;
  /** A reviewed run's output location, or a location whose runs' outputs lie under it: each firing calibrates from the latest reviewed one. */
  calibrationFrom?: string;
  /** With --calibration-from: the accuracy drop against big (human labels) certified. */
  maxDrop?: string;
}

type Write = (text: string) => void;
const stdout: Write = (t) => process.stdout.write(t);

/** Exactly one of --cron and --every, as a ScheduleTiming. */
export function parseTiming(o: { cron?: string; tz?: string; every?: number }): ScheduleTiming {
  if ((o.cron === undefined) === (o.every === undefined))
    throw new ConfigError('schedule add needs exactly one of --cron "<min hour day month weekday>" and --every <ms>');
  if (o.every !== undefined && o.tz) throw new ConfigError('--tz applies to --cron only');
  return o.cron !== undefined ? { cron: o.cron, ...(o.tz ? { tz: o.tz } : {}) } : { every: o.every! };
}

async function withQueue<T>(redisUrl: string, prefix: string, fn: (queue: Queue) => Promise<T>): Promise<T> {
  const connection = await connectRedisChecked(redisUrl, { maxRetriesPerRequest: 2 });
  const queue = quiet(new Queue(SCHEDULES_QUEUE, { connection, prefix }));
  try {
    return await fn(queue);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/** Create or replace schedule `name`; prints what was stored. */
export async function scheduleAddCommand(name: string, o: ScheduleAddOptions, write: Write = stdout): Promise<ScheduleTemplate> {
  const schedule = ScheduleName.safeParse(name);
  if (!schedule.success) throw new ConfigError(`schedule name '${name}': ${schedule.error.issues[0]!.message}`);
  const timing = parseTiming(o);
  const calibrationFrom = parseCalibrationFrom(o);
  // With --calibration-from, --target-agreement is the agreement certified from the reviews, not a warm-up's.
  const selfCalibration = calibrationFrom ? undefined : parseSelfCalibration(o);
  const config = await loadCascadeConfig(o, selfCalibration !== undefined);
  const redisUrl = requireRedisUrl(config, 'schedule add', o.config);
  // The schedule pins its models now: every firing runs exactly these files (or is refused).
  const stores = new Stores(config);
  const models = planningModels(config, stores);
  let planned: RunSpec;
  try {
    // Planned as `cascade submit` plans a run, so a self-calibrating schedule's first threshold is
    // the same decided-at-warm-up marker.
    planned = await planRun(config, o.source, o.out, models, undefined, selfCalibration);
    await checkCalibration(o, planned);
    if (calibrationFrom && planned.stages.length !== 2)
      throw new ConfigError(`--calibration-from calibrates a little/big pair; this schedule has ${planned.stages.length} stages`);
  } finally {
    await models.close();
    stores.close();
  }
  // Each firing has its own run id and creation time (runForFiring).
  const { runId: _runId, createdAt: _createdAt, source, out, ...run } = planned;
  const template: ScheduleTemplate = {
    schedule: name,
    source,
    out,
    extensions: config.extensions,
    window: config.window.batches,
    ...(config.window.bytes ? { windowBytes: config.window.bytes } : {}),
    run,
    ...(o.overwrite ? { overwrite: true } : {}),
    ...(calibrationFrom ? { calibrationFrom } : {}),
  };
  await withQueue(redisUrl, config.prefix, (queue) =>
    upsertSchedule(queue, timing, template).catch((err: Error) => {
      throw new ConfigError(`schedule ${name}: BullMQ refused ${'cron' in timing ? `--cron '${timing.cron}'` : `--every ${timing.every}`}: ${err.message}`);
    }),
  );
  const when = 'cron' in timing ? `cron '${timing.cron}'${timing.tz ? ` (${timing.tz})` : ' (UTC)'}` : `every ${timing.every} ms`;
  const calibrating = template.run.selfCalibration
    ? `; ${describeSelfCalibration(template.run.selfCalibration)}`
    : calibrationFrom
      ? `; ${describeCalibrationFrom(calibrationFrom)}; a refused firing keeps ${describeRouting(template.run)}`
      : '';
  write(`schedule ${name}: ${when}: ${template.source} → ${template.out}${calibrating}\n`);
  return template;
}

/** Print the schedules (a table, or JSON). */
export async function scheduleListCommand(o: { config?: string; prefix?: string; json?: boolean }, write: Write = stdout): Promise<ScheduleInfo[]> {
  const { redisUrl, prefix } = await fleetSettings(o);
  const schedules = await withQueue(redisUrl, prefix, listSchedules);
  if (o.json) write(`${JSON.stringify(schedules)}\n`);
  else if (schedules.length === 0) write('no schedules\n');
  else
    write(
      `${schedules
        .map((s) => {
          const when = s.cron ? `cron '${s.cron}'${s.tz ? ` ${s.tz}` : ''}` : `every ${s.every} ms`;
          const next = s.next ? new Date(s.next).toISOString() : '-';
          const calibrating = s.selfCalibration
            ? `  ${describeSelfCalibration(s.selfCalibration)}`
            : s.calibrationFrom
              ? `  ${describeCalibrationFrom(s.calibrationFrom)}`
              : '';
          return `${s.name.padEnd(24)} ${when.padEnd(28)} next ${next}  ${s.source ?? '?'} → ${s.out ?? '?'}${calibrating}`;
        })
        .join('\n')}\n`,
    );
  return schedules;
}

/** The --calibration-from target (undefined without it); ConfigError (exit 2) on a bad value or combination. */
export function parseCalibrationFrom(
  o: Pick<ScheduleAddOptions, 'calibrationFrom' | 'maxDrop' | 'targetAgreement' | 'delta' | 'warmup'>,
): CalibrationFrom | undefined {
  if (o.calibrationFrom === undefined) {
    if (o.maxDrop !== undefined) throw new ConfigError('--max-drop goes with --calibration-from');
    return undefined;
  }
  if (o.warmup !== undefined) throw new ConfigError('--calibration-from certifies from human reviews, not a warm-up: drop --warmup');
  if ((o.maxDrop === undefined) === (o.targetAgreement === undefined))
    throw new ConfigError('--calibration-from needs exactly one target: --max-drop <d> (accuracy against the human labels) or --target-agreement <a>');
  const fraction = (flag: string, text: string, ok: (x: number) => boolean) => {
    const x = /^\s*\d*\.?\d+\s*$/.test(text) ? Number(text) : Number.NaN;
    if (!ok(x)) throw new ConfigError(`${flag} ${text}: expected a fraction between 0 and 1`);
    return x;
  };
  const delta = o.delta === undefined ? DEFAULT_DELTA : fraction('--delta', o.delta, (x) => x > 0 && x < 1);
  const target =
    o.maxDrop !== undefined
      ? { rule: 'guaranteed-drop' as const, maxDrop: fraction('--max-drop', o.maxDrop, (x) => x >= 0 && x <= 1), delta }
      : { rule: 'guaranteed' as const, targetAgreement: fraction('--target-agreement', o.targetAgreement!, (x) => x > 0 && x < 1), delta };
  return { location: o.calibrationFrom, target };
}

/** A schedule's --calibration-from in a few words, e.g. `calibrated from reviews under s3://b/nightly/: accuracy drop ≤ 2% at δ 0.05`. */
export function describeCalibrationFrom(c: CalibrationFrom): string {
  const pct = (x: number) => `${Number((100 * x).toPrecision(6))}%`;
  const t = c.target;
  const what = t.rule === 'guaranteed-drop' ? `accuracy drop ≤ ${pct(t.maxDrop)}` : `agreement ≥ ${pct(t.targetAgreement)}`;
  return `calibrated from the latest reviewed run at or under ${c.location}: ${what} at δ ${t.delta}`;
}

/** A schedule's self-calibration in a few words, e.g. `self-calibrating: 95% at δ 0.05, warm-up 400`. */
export function describeSelfCalibration(c: NonNullable<RunSpec['selfCalibration']>): string {
  const pct = (x: number) => `${Number((100 * x).toPrecision(6))}%`;
  // The default depends on each firing's source size: its floor here, the 1% rule named.
  const warmup = !c.warmup
    ? `${defaultWarmupImages(c.targetAgreement, 0)} (default; at least 1% of the source)`
    : 'images' in c.warmup
      ? `${c.warmup.images}`
      : pct(c.warmup.fraction);
  return `self-calibrating: ${pct(c.targetAgreement)} at δ ${c.delta}, warm-up ${warmup}`;
}

/** Remove schedule `name`; throws ConfigError when there is none. */
export async function scheduleRemoveCommand(name: string, o: { config?: string; prefix?: string }, write: Write = stdout): Promise<void> {
  const { redisUrl, prefix } = await fleetSettings(o);
  const { removed, cancelled } = await withQueue(redisUrl, prefix, (queue) => removeSchedule(queue, name));
  const firings = cancelled > 0 ? `${cancelled} queued firing(s) of schedule ${name} cancelled` : '';
  if (!removed) {
    if (firings) write(`${firings}\n`);
    throw new ConfigError(`no schedule named '${name}' (prefix ${prefix}); \`cascade schedule list\` shows them`);
  }
  write(`schedule ${name} removed${cancelled > 0 ? ` (${cancelled} queued firing(s) cancelled)` : ''}\n`);
}
