/**
 * What BullMQ recorded about a queue's jobs, read back from its event stream
 * (`<prefix>:<queue>:events`), which outlives jobs removed on completion.
 */
import type { Redis } from 'ioredis';

/** Ids of the jobs that completed on `queue`, in the order they completed. */
export async function completedJobIds(connection: Redis, prefix: string, queue: string): Promise<string[]> {
  const entries = await connection.xrange(`${prefix}:${queue}:events`, '-', '+');
  const ids: string[] = [];
  for (const [, fields] of entries) {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
    if (f.get('event') === 'completed') ids.push(f.get('jobId')!);
  }
  return ids;
}
