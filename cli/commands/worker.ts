/**
 * `cascade worker <role...>`: a long-running consumer for a fleet. Roles are stage names
 * (little, big, or the names under `stages:`), `merge` and `scheduler`. SIGTERM or SIGINT
 * stops taking jobs, lets the batches in flight finish (BullMQ's worker.close waits for
 * them), closes everything and exits 0; a second signal exits at once. A process killed
 * outright loses nothing either: BullMQ hands its stalled jobs to another worker, and
 * parts and counts are idempotent.
 */
import { Queue } from 'bullmq';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { configuredStages } from '../../config/stages.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { CascadeMetrics, serveMetrics, type MetricsServer } from '../../workers/metrics.js';
import { SCHEDULES_QUEUE } from '../../workers/run-scheduler.js';
import { MERGE_QUEUE, stageQueueName } from '../../queue/jobs.js';
import { createLogger } from '../logger.js';
import { redactUrl } from '../redact-url.js';
import { requireRedisUrl } from './submit.js';

export interface WorkerCommandOptions {
  config?: string;
  little?: string;
  big?: string;
  concurrency?: number;
  batchSize?: number;
  metricsPort?: number;
  metricsHost?: string;
}

/** Roles beyond the stages. */
export const SERVICE_ROLES = ['merge', 'scheduler'] as const;

/** Check `roles` against the stages of the config; throws ConfigError naming the bad one. */
export function validateRoles(roles: string[], stageNames: string[]): string[] {
  const known = [...stageNames, ...SERVICE_ROLES];
  if (roles.length === 0) throw new ConfigError(`cascade worker needs at least one role: ${known.join(', ')}`);
  for (const role of roles) if (!known.includes(role)) throw new ConfigError(`unknown worker role '${role}': expected one of ${known.join(', ')}`);
  return [...new Set(roles)];
}

/** Resolves with the first SIGTERM/SIGINT; a second one exits the process at once. */
function firstSignal(log: (msg: string) => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (signal: NodeJS.Signals) => {
      if (received) {
        log(`${signal} again: exiting without waiting for jobs in flight (BullMQ will re-run them as stalled)`);
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', handler).on('SIGINT', handler);
  });
}

/** Run the worker roles until a signal, then shut down gracefully. */
export async function workerCommand(roles: string[], o: WorkerCommandOptions): Promise<void> {
  const logger = createLogger();
  const log = (msg: string) => logger.info(msg);
  const config = await loadConfig({ file: o.config, overrides: { little: o.little, big: o.big, concurrency: o.concurrency } });
  const stageNames = configuredStages(config).map((s) => s.name);
  const wanted = validateRoles(roles, stageNames);
  const redisUrl = requireRedisUrl(config, 'worker');
  const signal = firstSignal(log);

  let scheduleQueue: Queue | undefined;
  const metrics = new CascadeMetrics({
    processMetrics: true,
    queues: () => [
      ...stageNames.map((name) => ({ name: stageQueueName(name), queue: runtime.queues.stage(name) })),
      { name: MERGE_QUEUE, queue: runtime.queues.merge },
      { name: SCHEDULES_QUEUE, queue: (scheduleQueue ??= new Queue(SCHEDULES_QUEUE, { connection: runtime.redis, prefix: config.prefix })) },
    ],
  });
  const runtime = await startRuntime(config, redisUrl, wanted, log, { maxBatch: o.batchSize, onBatch: (stage, stats, errors) => metrics.onBatch(stage, stats, errors) });
  let server: MetricsServer | undefined;
  try {
    if (o.metricsPort !== undefined) server = await serveMetrics(metrics, o.metricsPort, o.metricsHost);
  } catch (err) {
    await runtime.close();
    throw new ConfigError(`cannot serve metrics on port ${o.metricsPort}: ${(err as Error).message}`);
  }
  log(
    `worker ready: roles ${wanted.join(', ')} on ${redactUrl(redisUrl)} (prefix ${config.prefix}), concurrency ${config.concurrency}` +
      (server ? `, metrics on port ${server.port}` : ''),
  );

  const received = await signal;
  log(`${received}: no new jobs; finishing the batches in flight (send it again to exit now)`);
  await runtime.close();
  await scheduleQueue?.close();
  await server?.close();
  log('worker stopped cleanly');
}
