/**
 * Configuration of fleet processes: errors that name the bad field and what it expects,
 * worker roles, the Redis-only settings of status/schedule/dashboard, and that a Redis
 * password never reaches a log line.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireRedisUrl } from '../../cli/commands/submit.js';
import { refuseRunFlags, validateRoles } from '../../cli/commands/worker.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { fleetSettings } from '../../cli/fleet-settings.js';
import { redactUrl } from '../../cli/redact.js';
import { ConfigError, loadConfig } from '../../config/load-config.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-fleet-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configError(settings: Record<string, unknown>): Promise<string> {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ little: 'a.onnx', big: 'b.onnx', ...settings }));
  const err = await loadConfig({ file, env: {} }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  return (err as Error).message;
}

describe('config errors name the field and the expected value', () => {
  it('numbers out of range', async () => {
    const msg = await configError({ threshold: 1.5, concurrency: 0 });
    expect(msg).toMatch(/threshold: Too big: expected number to be <=1/);
    expect(msg).toMatch(/concurrency: Too small: expected number to be >=1/);
  });
  it('enums list their options, nested fields give their path', async () => {
    const msg = await configError({ metric: 'certainty', executionProviders: ['gpu'], s3: { endpoint: 'not a url' } });
    expect(msg).toMatch(/metric: Invalid option: expected one of "maxprob"\|"margin"\|"entropy"/);
    expect(msg).toMatch(/executionProviders\.0: Invalid option: expected one of "cpu"\|"cuda"/);
    expect(msg).toMatch(/s3\.endpoint: /);
  });
  it('wrong types and unknown keys', async () => {
    const msg = await configError({ batchSize: 'many', redisURL: 'redis://x' });
    expect(msg).toMatch(/batchSize: Invalid input: expected number, received string/);
    expect(msg).toMatch(/Unrecognized key: "redisURL"/);
  });
});

describe('fleet settings', () => {
  it('workers accept any stage name (runs name their stages), merge and scheduler, and say what a role must look like', () => {
    expect(validateRoles(['little', 'merge', 'little'])).toEqual(['little', 'merge']);
    expect(validateRoles(['tiny', 'scheduler'])).toEqual(['tiny', 'scheduler']);
    expect(() => validateRoles(['huge model'])).toThrow(
      "unknown worker role 'huge model': expected a stage name (stage names use letters, digits, _ and - (at most 32)) or merge, scheduler",
    );
    expect(() => validateRoles([])).toThrow(/at least one role/);
  });

  it('workers refuse flags that would change rows, naming them', () => {
    expect(() => refuseRunFlags({ little: 'a.onnx', threshold: '0.9' })).toThrow(
      'cascade worker does not take --little, --threshold: a worker labels each run with the models and settings the run pinned at submit',
    );
    expect(() => refuseRunFlags({ batchSize: '8' })).toThrow(/--batch-size is images per job, set at submit; --max-batch caps/);
    expect(() => refuseRunFlags({ concurrency: 2, maxBatch: 8 })).not.toThrow();
  });

  it('a worker config ignores (and lists) the run settings a shared file holds, and keeps the rest', async () => {
    const file = join(dir, 'shared.yaml');
    await writeFile(
      file,
      'little: a.onnx\nbig: b.onnx\nthreshold: 0.7\nlimits: { maxBytes: 40000 }\nnumerics: native\nconcurrency: 3\nprefix: fleet\nsources: { listConcurrency: 4, localRoots: [/data] }\n',
    );
    const { config, ignored } = await loadWorkerConfig({ file, env: {} });
    // How a prefix is listed travels with each run (its listing plan), as the models do.
    expect(ignored).toEqual(['little', 'big', 'threshold', 'limits', 'numerics', 'sources.listConcurrency']);
    expect(config).toMatchObject({ concurrency: 3, prefix: 'fleet', sources: { localRoots: ['/data'] } });
    expect(config.sources).not.toHaveProperty('listConcurrency');
    expect(config).not.toHaveProperty('limits');
  });

  it('fleet commands need a shared Redis', () => {
    expect(() => requireRedisUrl({ redisUrl: undefined } as never, 'submit')).toThrow(/cascade submit needs a shared Redis: set REDIS_URL/);
    expect(requireRedisUrl({ redisUrl: 'redis://r:6379' } as never, 'submit')).toBe('redis://r:6379');
  });

  it('status, schedule and dashboard read only redisUrl, prefix and queue shards: REDIS_URL and --prefix win over the file', async () => {
    const file = join(dir, 'fleet.yaml');
    await writeFile(file, 'redisUrl: redis://file:6379\nprefix: fromfile\nlittle: models/does-not-matter.onnx\nqueues: {shards: 4}\n');
    expect(await fleetSettings({ config: file }, {})).toEqual({ redisUrl: 'redis://file:6379', prefix: 'fromfile', shards: 4 });
    expect(await fleetSettings({ config: file, prefix: 'flag' }, { REDIS_URL: 'redis://env:1' })).toEqual({
      redisUrl: 'redis://env:1',
      prefix: 'flag',
      shards: 4,
    });
    expect(await fleetSettings({}, { REDIS_URL: 'redis://env:1' })).toEqual({ redisUrl: 'redis://env:1', prefix: 'cascade', shards: 1 });
    await writeFile(join(dir, 'zero.yaml'), 'queues: {shards: 0}\n');
    await expect(fleetSettings({ config: join(dir, 'zero.yaml') }, { REDIS_URL: 'redis://x' })).rejects.toThrow(/queues\.shards/);
    await expect(fleetSettings({}, {})).rejects.toThrow(/no Redis to talk to: set REDIS_URL/);
    await writeFile(join(dir, 'bad.yaml'), 'prefix: ""\n');
    await expect(fleetSettings({ config: join(dir, 'bad.yaml') }, { REDIS_URL: 'redis://x' })).rejects.toThrow(/prefix: Too small/);
    await expect(fleetSettings({ config: join(dir, 'missing.yaml') }, {})).rejects.toThrow(/cannot read .*missing\.yaml/);
  });

  it('a Redis password never reaches a log line', () => {
    expect(redactUrl('redis://:s3cret@redis.internal:6379/2')).toBe('redis://***@redis.internal:6379/2');
    expect(redactUrl('rediss://default:s3cret@r:6380')).toBe('rediss://***@r:6380');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('::not a url s3cret')).not.toContain('s3cret');
  });
});
