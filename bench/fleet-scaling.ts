/**
 * Fleet scaling: the same run labelled by 1, 2, … little-worker processes (plus one big+merge
 * process), each a separate `cascade worker` of the built CLI on one private redis-server.
 * Prints images/s per fleet size and the ratio to the first. Run `npm run build` first.
 * Usage: node --import tsx bench/fleet-scaling.ts <folder> <little> <big> [workers=1,2] [threshold=0.5]
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startPrivateRedis } from '../cli/private-redis.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { connectRedis } from '../queue/redis-connection.js';
import { RunTracker } from '../queue/run-tracker.js';

const [folder, little, big, counts = '1,2', threshold = '0.5'] = process.argv.slice(2);
if (!folder || !little || !big) throw new Error('usage: fleet-scaling.ts <folder> <little> <big> [workers=1,2] [threshold]');
const sizes = counts.split(',').map(Number);

const redis = await startPrivateRedis();
const dir = await mkdtemp(join(tmpdir(), 'cascade-fleet-bench-'));
const env = { ...process.env, REDIS_URL: redis.url, CASCADE_LOG_LEVEL: 'warn' };
const connection = connectRedis(redis.url);

/** Start `cascade worker <roles>` and resolve once it is ready. */
function worker(roles: string[], config: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['bin/cascade.js', 'worker', ...roles, '--config', config], {
    env: { ...env, CASCADE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((ok, fail) => {
    let err = '';
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString('utf8');
      if (err.includes('worker ready')) ok(child);
    });
    child.once('exit', (code) => fail(new Error(`worker ${roles.join(' ')} exited ${code}:\n${err}`)));
  });
}

const results: Array<{ workers: number; images: number; seconds: number; rate: number }> = [];
try {
  for (const n of sizes) {
    const prefix = `bench${n}`;
    const config = join(dir, `cascade-${n}.json`);
    await writeFile(
      config,
      JSON.stringify({
        little: resolve(little),
        big: resolve(big),
        threshold: Number(threshold),
        prefix,
        concurrency: 1,
        inferenceThreads: 1,
        sources: { localRoots: [resolve(folder)] },
      }),
    );
    const children = await Promise.all([...Array.from({ length: n }, () => worker(['little'], config)), worker(['big', 'merge'], config)]);
    const started = performance.now();
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/cascade.js', 'submit', folder, '--out', join(dir, `out-${n}`), '--config', config], {
      env,
    });
    const summary = await waitForRun(new RunTracker(connection, prefix), stdout.trim(), () => undefined, 100);
    const seconds = (performance.now() - started) / 1000;
    results.push({ workers: n, images: summary.images, seconds, rate: summary.images / seconds });
    console.error(`${n} little worker(s): ${summary.images} images in ${seconds.toFixed(1)} s`);
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  }
  const base = results[0]!.rate;
  console.log('little workers | images | seconds | images/s | vs first');
  for (const r of results)
    console.log(
      `${String(r.workers).padStart(14)} | ${String(r.images).padStart(6)} | ${r.seconds.toFixed(1).padStart(7)} | ${r.rate.toFixed(1).padStart(8)} | ${(r.rate / base).toFixed(2)}x`,
    );
} finally {
  connection.disconnect();
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
