/**
 * An empty source (a folder that exists, with no file under the run's extensions) warns: one
 * `warn` log line naming the source, from `cascade run` and `cascade submit` (the built CLI, child
 * processes, real redis-server). The run still completes with exit 0, an empty manifest and a
 * summary of 0 images (docs/reliability.md says why).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { colourSpec } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { type TestModels, writeTestModels } from '../helpers/test-models.js';

let dir: string;
let empty: string;
let models: TestModels;
let redis: TestRedis;

/** `cascade <args>` with JSON logs: exit code, stdout and the parsed log lines. */
async function cascade(args: string[]): Promise<{ code: number; stdout: string; lines: Array<Record<string, unknown>> }> {
  const env = { ...process.env, REDIS_URL: '', CASCADE_LOG_FORMAT: 'json', CASCADE_LOG_LEVEL: 'info' };
  const done = (code: number, stdout: string, stderr: string) => ({
    code,
    stdout,
    lines: stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  });
  return promisify(execFile)(process.execPath, ['bin/cascade.js', ...args], { env, timeout: 60_000 }).then(
    ({ stdout, stderr }) => done(0, stdout, stderr),
    (err: { code: number; stdout: string; stderr: string }) => done(err.code, err.stdout, err.stderr),
  );
}

async function writeConfig(extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ little: colourSpec(models.colourLittle, models.labels), big: colourSpec(models.colourBig, models.labels), ...extra }));
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-empty-'));
  models = await writeTestModels(join(dir, 'models'));
  // Exists, holds a file, but nothing under the run's image extensions.
  empty = join(dir, 'drop');
  await mkdir(empty);
  await writeFile(join(empty, 'README.txt'), 'images arrive here\n');
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The warn lines (level 40) of a run. */
const warnings = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.level === 40);

describe('an empty source', () => {
  it('cascade run warns once, naming the source, and completes with exit 0 and an empty manifest', async () => {
    const out = join(dir, 'out-run');
    const r = await cascade(['run', empty, '--out', out, '--config', await writeConfig(), '--json']);
    expect(r.code).toBe(0);
    expect(warnings(r.lines).map((l) => [l.msg, l.source])).toEqual([
      [expect.stringMatching(new RegExp(`^source ${empty} listed no images \\(extensions \\.jpg .*\\): the run is empty`)), empty],
    ]);
    expect(await readFile(join(out, 'manifest.jsonl'), 'utf8')).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ images: 0, labeled: 0, errors: 0 });
  });

  it('cascade submit warns once, naming the source, and still queues the (empty) run', async () => {
    const r = await cascade([
      'submit',
      empty,
      '--out',
      join(dir, 'out-submit'),
      '--config',
      await writeConfig({ redisUrl: redis.url, prefix: uniquePrefix('empty') }),
    ]);
    expect(r.code).toBe(0);
    expect(warnings(r.lines).map((l) => [l.msg, l.source])).toEqual([[expect.stringMatching(new RegExp(`^source ${empty} listed no images`)), empty]]);
    expect(r.stdout).toMatch(/^[0-9a-f]{16}\n$/);
  });

  it('a source with images does not warn', async () => {
    const some = join(dir, 'some');
    await mkdir(some);
    await writeFile(
      join(some, 'red.png'),
      await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
        .png()
        .toBuffer(),
    );
    const r = await cascade([
      'submit',
      some,
      '--out',
      join(dir, 'out-some'),
      '--config',
      await writeConfig({ redisUrl: redis.url, prefix: uniquePrefix('some') }),
    ]);
    expect(r.code).toBe(0);
    expect(warnings(r.lines)).toEqual([]);
  });
});
