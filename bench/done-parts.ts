/**
 * Redis memory of a run's counted parts (queue/run-tracker.ts) for N batches: the bitmaps the
 * tracker keeps now (one bit per batch and part kind, written through `finishPart` itself) against
 * the set of part ids it kept before (`b<batch>s0` members, written as its script did: SADD).
 */
import { startPrivateRedis } from '../cli/private-redis.js';
import { partId } from '../queue/jobs.js';
import { connectRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';
import { fakeRunSpec } from '../test/helpers/run-spec.js';

export interface DonePartsRow {
  batches: number;
  structure: string;
  /** MEMORY USAGE of the done keys, and used_memory growth while they were written. */
  keyMb: number;
  usedMb: number;
  bytesPerBatch: number;
  seconds: number;
}

/** Count `batches` first-stage parts both ways in a private redis-server and measure each structure. */
export async function donePartsBench(batches: number, log: (line: string) => void): Promise<DonePartsRow[]> {
  const server = await startPrivateRedis();
  const redis = connectRedis(server.url);
  const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const keyBytes = async (key: string) => Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  const rows: DonePartsRow[] = [];
  try {
    const chunk = 2_000;
    const measure = async (structure: string, key: string, write: (from: number, to: number) => Promise<unknown>) => {
      const before = await used();
      const started = performance.now();
      for (let from = 0; from < batches; from += chunk) await write(from, Math.min(batches, from + chunk));
      const seconds = (performance.now() - started) / 1000;
      const [k, u] = [await keyBytes(key), (await used()) - before];
      rows.push({ batches, structure, keyMb: k / 1e6, usedMb: u / 1e6, bytesPerBatch: k / batches, seconds });
      log(`  ${structure}: ${(k / 1e6).toFixed(2)} MB in ${seconds.toFixed(1)} s`);
    };
    await measure('set of part ids (before)', 'bench:run:old:done', (from, to) => {
      const ids = Array.from({ length: to - from }, (_, i) => partId(from + i, 0));
      return redis.sadd('bench:run:old:done', ...ids);
    });
    const tracker = new RunTracker(redis, 'bench');
    await tracker.create(fakeRunSpec('new'));
    const counts = { images: 64, accepted: 64, forwarded: 0, errors: 0 };
    await measure('bitmap of batches, through finishPart (now)', 'bench:run:new:done:s0', (from, to) =>
      Promise.all(Array.from({ length: to - from }, (_, i) => tracker.finishPart('new', { id: partId(from + i, 0), stage: 0, final: 64, counts }))),
    );
    if ((await redis.bitcount('bench:run:new:done:s0')) !== batches) throw new Error('the bitmap did not count every batch once');
  } finally {
    redis.disconnect();
    await server.stop();
  }
  return rows;
}
