/**
 * `cascade worker <role...>`: a long-running consumer for a fleet. Roles are stage names
 * (little, big, or the names under `stages:`), `merge` and `scheduler`. SIGTERM or SIGINT
 * stops taking jobs, lets the batches in flight finish (BullMQ's worker.close waits for
 * them), closes everything and exits 0; a second signal exits at once. A process killed
 * outright loses nothing either: BullMQ hands its stalled jobs to another worker, and
 * parts and counts are idempotent.
 */
import { Queue } from 'bullmq';
import { ConfigError } from '../../config/load-config.js';
import { isServiceRole, SERVICE_ROLES, StageName } from '../../config/schema.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { CascadeMetrics, serveMetrics, type MetricsServer } from '../../workers/metrics.js';
import { lastScheduleSuccesses, SCHEDULES_QUEUE, scheduleOfRun } from '../../workers/run-scheduler.js';
import { openRunModels, WorkerHealth } from '../../workers/worker-health.js';
import { QueueLayoutWatch } from '../../workers/queue-layout-watch.js';
import { quiet } from '../../queue/cascade-queues.js';
import { MERGE_QUEUE } from '../../queue/jobs.js';
import { exitNow } from '../exit-now.js';
import { createLogger, logFn } from '../logger.js';
import { redactUrl } from '../redact.js';
import { requireRedisUrl } from './submit.js';

export interface WorkerCommandOptions {
  config?: string;
  concurrency?: number;
  maxBatch?: number;
  metricsPort?: number;
  metricsHost?: string;
  /** Flags that would change rows; present only to be refused. */
  little?: string;
  big?: string;
  threshold?: string;
  metric?: string;
  calibration?: string;
  batchSize?: string;
}

/** Refuse flags that would change a run's rows: a worker labels each run with the run's own settings. */
export function refuseRunFlags(o: WorkerCommandOptions): void {
  const given = (['little', 'big', 'threshold', 'metric', 'calibration', 'batchSize'] as const).filter((k) => o[k] !== undefined);
  if (given.length === 0) return;
  const flags = given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ');
  const hint = given.includes('batchSize') ? ' (--batch-size is images per job, set at submit; --max-batch caps this worker’s inference batches)' : '';
  throw new ConfigError(`cascade worker does not take ${flags}: a worker labels each run with the models and settings the run pinned at submit${hint}`);
}

/** Check `roles`: stage names (any valid one: runs name their stages) and the service roles; throws ConfigError naming the bad one. */
export function validateRoles(roles: string[]): string[] {
  if (roles.length === 0) throw new ConfigError(`cascade worker needs at least one role: a stage name (little, big, …), ${SERVICE_ROLES.join(', ')}`);
  for (const role of roles) {
    if (isServiceRole(role)) continue;
    const name = StageName.safeParse(role);
    if (!name.success)
      throw new ConfigError(`unknown worker role '${role}': expected a stage name (${name.error.issues[0]!.message}) or ${SERVICE_ROLES.join(', ')}`);
  }
  return [...new Set(roles)];
}

/** Resolves with the first SIGTERM/SIGINT; a second one exits the process at once. */
function firstSignal(log: (msg: string) => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (signal: NodeJS.Signals) => {
      if (received) {
        log(`${signal} again: exiting without waiting for jobs in flight (BullMQ will re-run them as stalled)`);
        void exitNow(1);
        return;
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', handler).on('SIGINT', handler);
  });
}

/**
 * Resolves with the mismatch lines when unmerged runs are queued on another layout than this
 * worker's; otherwise starts watching for later ones and never resolves. A failed first look
 * (Redis away) is a warning: the watch looks again.
 */
function refusedLayouts(layout: QueueLayoutWatch, log: (msg: string, fields?: { level?: 'warn' }) => void): Promise<string[]> {
  return new Promise((resolve) => {
    layout.newMismatches().then(
      (lines) => (lines.length > 0 ? resolve(lines) : layout.start()),
      (err: Error) => {
        log(`cannot check the runs' queue layouts: ${err.message}`, { level: 'warn' });
        layout.start();
      },
    );
  });
}

/** Run the worker roles until a signal, then shut down gracefully. */
export async function workerCommand(roles: string[], o: WorkerCommandOptions): Promise<void> {
  const logger = createLogger();
  const log = logFn(logger);
  refuseRunFlags(o);
  const wanted = validateRoles(roles);
  const { config, ignored } = await loadWorkerConfig({ file: o.config, overrides: { concurrency: o.concurrency } });
  const redisUrl = requireRedisUrl(config, 'worker', o.config);
  if (ignored.length > 0) log(`config ${o.config}: ${ignored.join(', ')} not used by workers: each run brings its own, pinned at submit`);
  const stageNames = wanted.filter((r) => !isServiceRole(r));
  const signal = firstSignal(log);

  let scheduleQueue: Queue | undefined;
  // Opened on the first scrape: only a worker with metrics reports the schedules queue.
  const schedulesQueue = () => {
    scheduleQueue ??= quiet(new Queue(SCHEDULES_QUEUE, { connection: runtime.redis, prefix: config.prefix }));
    return scheduleQueue;
  };
  const metrics = new CascadeMetrics({
    processMetrics: true,
    stages: stageNames,
    merges: wanted.includes('merge'),
    queues: () => [
      ...stageNames.flatMap((name) => runtime.queues.stageShards(name).map((queue) => ({ name: queue.name, queue }))),
      { name: MERGE_QUEUE, queue: runtime.queues.merge },
      { name: SCHEDULES_QUEUE, queue: schedulesQueue() },
    ],
    scheduleSuccesses: wanted.includes('scheduler') ? () => lastScheduleSuccesses(schedulesQueue(), runtime.tracker) : undefined,
  });
  const runtime = await startRuntime(config, redisUrl, wanted, log, {
    maxBatch: o.maxBatch,
    onBatch: (stage, stats, errors, cost) => metrics.onBatch(stage, stats, errors, cost),
    onFiring: (schedule, outcome) => metrics.onFiring(schedule, outcome),
    onRunFinished: (runId, outcome) => metrics.onRunFinished(scheduleOfRun(runId) ?? '', outcome),
  });
  const health = new WorkerHealth(runtime.redis);
  void openRunModels({ tracker: runtime.tracker, models: runtime.models, stages: stageNames, limit: config.maxModels, log })
    .catch((err: Error) => log(`cannot list the runs in flight: ${err.message}`, { level: 'warn' }))
    .finally(() => health.modelsReady());
  let server: MetricsServer | undefined;
  try {
    if (o.metricsPort !== undefined) server = await serveMetrics(metrics, o.metricsPort, o.metricsHost, { readiness: () => health.check() });
  } catch (err) {
    await runtime.close();
    throw new ConfigError(`cannot serve metrics on port ${o.metricsPort}: ${(err as Error).message}`);
  }
  log(
    `worker ready: roles ${wanted.join(', ')} on ${redactUrl(redisUrl)} (prefix ${config.prefix}), concurrency ${config.concurrency}` +
      (server ? `, metrics on port ${server.port}` : ''),
  );

  // A stage worker never sees a run queued on another layout: one unmerged at start means the
  // fleet's configs disagree, so refuse (exit 2) rather than leave it waiting without a word.
  const layout = stageNames.length > 0 ? new QueueLayoutWatch({ tracker: runtime.tracker, shards: config.queues.shards, log }) : undefined;
  const received = await Promise.race([signal, layout ? refusedLayouts(layout, log) : new Promise<never>(() => {})]);
  await layout?.stop();
  health.stop();
  if (Array.isArray(received)) {
    await runtime.close();
    await scheduleQueue?.close();
    await server?.close();
    const more = received.length > 1 ? ` (and ${received.length - 1} more run(s) like it)` : '';
    throw new ConfigError(`${received[0]}${more}`);
  }
  log(`${received}: no new jobs; finishing the batches in flight (send it again to exit now)`);
  if (!(await runtime.close())) {
    log('Redis is unavailable: stopped without waiting for it (the batches in flight run again, as stalled jobs, once it is back)', { level: 'warn' });
    await exitNow(0);
  }
  await scheduleQueue?.close();
  await server?.close();
  log('worker stopped cleanly');
}
