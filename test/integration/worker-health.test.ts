/**
 * The health endpoints of a real `cascade worker` process (built CLI: bin/cascade.js → dist/;
 * `npm test` builds first) on a real redis-server that the test then stops: /readyz turns 200
 * once the model of the run in flight is open, and 503 naming Redis once it is gone, while
 * /metrics still answers with the last queue depths and /healthz stays 200.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { planRun } from '../../producers/plan-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
let dir: string;
let models: TestModels;
let redis: TestRedis;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-worker-health-'));
  models = await writeTestModels(join(dir, 'models'));
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** GET `path` on the worker's metrics port: [status, body]. */
async function get(port: number, path: string): Promise<[number, string]> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return [res.status, await res.text()];
}

/** Poll `path` until its answer satisfies `ok` (the test's own timeout bounds the wait). */
async function until(port: number, path: string, ok: (r: [number, string]) => boolean): Promise<[number, string]> {
  for (;;) {
    const r = await get(port, path);
    if (ok(r)) return r;
    await sleep(100);
  }
}

describe('cascade worker health endpoints', () => {
  it('/readyz: 200 once the run in flight’s model is open, 503 naming Redis once it stops; /metrics and /healthz keep answering', async () => {
    const prefix = uniquePrefix('health');
    const spec = (path: string) => colourSpec(path, models.labels);
    const settings = { little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, batchSize: 2, prefix, redisUrl: redis.url };
    const configFile = join(dir, 'cascade.json');
    await writeFile(configFile, JSON.stringify({ prefix, redisUrl: redis.url, concurrency: 1 }));
    // A run in flight (recorded, no jobs yet) whose little model the worker opens at start.
    const planner = await startRuntime(await loadConfig({ overrides: settings }), redis.url, [], () => undefined);
    try {
      expect(
        await planner.tracker.create(await planRun(await loadConfig({ overrides: settings }), `${dir}/none/`, `${dir}/out/`, planner.models, 'health-1')),
      ).toBe(true);
    } finally {
      await planner.close();
    }

    const env = { ...process.env, REDIS_URL: '', CASCADE_LOG_LEVEL: 'info' };
    const child: ChildProcess = spawn(
      process.execPath,
      ['bin/cascade.js', 'worker', 'little', '--config', configFile, '--metrics-port', '0', '--metrics-host', '127.0.0.1'],
      {
        cwd: ROOT,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    try {
      for (;;) {
        if (/metrics on port (\d+)/.test(stderr)) break;
        if (child.exitCode !== null) throw new Error(`worker exited: ${stderr}`);
        await sleep(50);
      }
      const port = Number(/metrics on port (\d+)/.exec(stderr)![1]);
      expect(await until(port, '/readyz', ([s]) => s === 200)).toEqual([200, 'ready\n']);
      // It got ready by opening the run's model (before any job arrived): the cache logged the load.
      expect(stderr).toMatch(/little: opened .* \(sha256 [0-9a-f]{12}\)/);
      expect(stderr).not.toMatch(/cannot open the model/);
      let text = (await get(port, '/metrics'))[1];
      expect(text).toMatch(/^cascade_queue_jobs\{queue="stage-little",state="waiting"\} 0$/m);
      expect(text).toMatch(/^cascade_redis_up 1$/m);

      await redis.stop();
      const [status, body] = await until(port, '/readyz', ([s]) => s === 503);
      expect(status).toBe(503);
      expect(body).toMatch(/^not ready: redis (connecting|reconnecting|close|end|wait)\n$/);
      const metrics = await get(port, '/metrics');
      expect(metrics[0]).toBe(200);
      text = metrics[1];
      expect(text).toMatch(/^cascade_queue_jobs\{queue="stage-little",state="waiting"\} 0$/m);
      expect(text).toMatch(/^cascade_redis_up 0$/m);
      expect(Number(/^cascade_redis_read_age_seconds (\S+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
      expect(text).toMatch(/^process_resident_memory_bytes \d/m);
      expect(await get(port, '/healthz')).toEqual([200, 'ok\n']);
    } finally {
      child.kill('SIGKILL');
      redis = await startRedis();
    }
  });
});
