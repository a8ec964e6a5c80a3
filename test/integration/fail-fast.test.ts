/**
 * Fail fast, stop clean, say why (issue 11): the real CLI (`node bin/cascade.js`, built dist/)
 * against real redis-servers. Every failure ends bounded, with one precise line and the exit
 * code of the convention: 0 success, 1 the run or check failed, 2 usage or configuration.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;
let redis: TestRedis;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Run the CLI to its end (killed after `timeoutMs`); never rejects. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/cascade.js', ...args],
      { env: { ...process.env, CASCADE_DEBUG: '', ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 });
      },
    );
  });
}

async function specFile(name: string, path: string): Promise<string> {
  const file = join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } }),
  );
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-fail-fast-'));
  models = await writeTestModels(join(dir, 'models'));
  await mkdir(join(dir, 'images'));
  for (const [i, [r, g, b]] of [
    [255, 0, 0],
    [0, 255, 0],
    [128, 128, 128],
    [64, 64, 64],
  ].entries()) {
    await writeFile(
      join(dir, 'images', `img-${i}.png`),
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: r!, g: g!, b: b! } } })
        .png()
        .toBuffer(),
    );
  }
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('exit codes and one-line errors', () => {
  it('--version prints package.json version, exit 0', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it("commander's usage errors exit 2: unknown option, missing argument", async () => {
    const unknown = await cli(['run', 'x', '--out', 'y', '--no-such-flag']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option '--no-such-flag'/);
    const missing = await cli(['run']);
    expect(missing.code).toBe(2);
  });

  it('a known error is one line without a stack; --debug adds the stack', async () => {
    const r = await cli(['status', 'x'], { REDIS_URL: '' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^cascade: no Redis to talk to/);
    const debug = await cli(['status', 'x', '--debug'], { REDIS_URL: '' });
    expect(debug.code).toBe(2);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });
});

describe('a run that cannot complete ends', () => {
  it('batches failed for good (parts/ is a file): exit 1, which batches, the first error, the retry line', async () => {
    const out = join(dir, 'out-broken');
    await mkdir(out, { recursive: true });
    // The run claims its location, then every part write fails.
    await writeFile(join(out, 'parts'), 'not a directory');
    const config = join(dir, 'broken.json');
    await writeFile(config, JSON.stringify({ prefix: uniquePrefix('ff') }));
    const r = await cli(
      [
        'run',
        join(dir, 'images'),
        '--out',
        out,
        '--config',
        config,
        '--little',
        await specFile('little', models.colourLittle),
        '--big',
        await specFile('big', models.colourBig),
        '--threshold',
        '0.9',
        '--batch-size',
        '2',
        '--run-id',
        'broken-1',
        '--no-progress',
      ],
      { REDIS_URL: redis.url },
      90_000,
    );
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cascade: run broken-1 failed: 2 batch\(es\) failed for good/);
    expect(r.stderr).toMatch(/little:broken-1-b\d+-s0/);
    expect(r.stderr).toMatch(/first error \(broken-1-b\d+-s0\): .*(ENOTDIR|EEXIST|not a directory)/);
    expect(r.stderr).toContain('cascade retry broken-1');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.seconds).toBeLessThan(60);
  });
});
