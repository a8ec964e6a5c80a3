/**
 * Issue 24, item 7, on a real redis-server through the built CLI: `cascade schedule remove`
 * cancels the schedule's firings that are already queued (BullMQ's removeJobScheduler leaves
 * them, and a scheduler process used to submit their runs later), and a scheduler process skips
 * a firing whose schedule is gone (one taken between the removal and its start).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { SCHEDULES_QUEUE } from '../../workers/run-scheduler.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `cascade <args>` to its end; never rejects. */
function cli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/cascade.js', ...args],
      { env: { ...process.env, CASCADE_DEBUG: '', REDIS_URL: '' }, timeout: 90_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

const work = withTempDir('schedule-remove');
const models = withModels(work);
const redis = withRedis();
const prefix = uniquePrefix('srm');
let config: string;
let connection: Redis;
let queue: Queue;

beforeAll(async () => {
  await mkdir(join(work.path, 'images'));
  config = join(work.path, 'cascade.json');
  const spec = (path: string) => colourSpec(path, models.labels);
  await writeFile(config, JSON.stringify({ little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, redisUrl: redis.url, prefix }));
  connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  queue = new Queue(SCHEDULES_QUEUE, { connection, prefix });
});

afterAll(async () => {
  await queue?.close();
  connection?.disconnect();
});

/** The firings of `schedule` not yet started. */
async function queuedFirings(schedule: string) {
  return (await queue.getJobs(['wait', 'delayed', 'prioritized'], 0, -1)).filter((j) => j.id?.startsWith(`repeat:${schedule}:`));
}

describe('cascade schedule remove', () => {
  it('cancels the firings already queued, and a scheduler process submits nothing for a removed schedule', async () => {
    const add = await cli([
      'schedule',
      'add',
      'hourly',
      '--every',
      '3600000',
      '--source',
      join(work.path, 'images'),
      '--out',
      join(work.path, 'out/{date}'),
      '--config',
      config,
    ]);
    expect(add.code, add.stderr).toBe(0);
    // An interval schedule queues its first firing at once; no scheduler process runs yet to take it.
    expect(await queuedFirings('hourly')).toHaveLength(1);
    const template = (await queuedFirings('hourly'))[0]!.data;

    const remove = await cli(['schedule', 'remove', 'hourly', '--config', config]);
    expect(remove.code, remove.stderr).toBe(0);
    expect(remove.stdout).toBe('schedule hourly removed (1 queued firing(s) cancelled)\n');
    expect(await queuedFirings('hourly')).toEqual([]);

    // A firing taken by a scheduler just as the schedule went: it must not start a run either.
    await queue.add('fire', template, { jobId: 'repeat:hourly:1796000000000' });
    const logs: string[] = [];
    const runtime = await startRuntime(await loadConfig({ file: config }), redis.url, ['scheduler'], (m) => logs.push(m));
    try {
      for (let i = 0; i < 200 && (await queue.getJobState('repeat:hourly:1796000000000')) !== 'completed'; i++) await sleep(50);
      expect(await queue.getJobState('repeat:hourly:1796000000000'), logs.join('\n')).toBe('completed');
      expect(await runtime.tracker.runIds()).toEqual([]);
      expect(logs.join('\n')).toContain('scheduler: hourly was removed; firing repeat:hourly:1796000000000 submits nothing');
    } finally {
      await runtime.close();
    }
  }, 120_000);
});
