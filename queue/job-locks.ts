/**
 * BullMQ worker lock settings from the config's JobLocks: how long a job's lock lives without
 * renewal and how often workers look for stalled jobs (those whose worker died).
 */
import type { WorkerOptions } from 'bullmq';
import type { JobLocks } from '../config/schema.js';

export type LockOptions = Pick<WorkerOptions, 'lockDuration' | 'stalledInterval' | 'maxStalledCount'>;

/** The BullMQ Worker options for `locks`. */
export function bullLockOptions(locks: JobLocks): LockOptions {
  return { lockDuration: locks.lockDurationMs, stalledInterval: locks.stalledIntervalMs, maxStalledCount: locks.maxStalledCount };
}
