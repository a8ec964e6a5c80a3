/**
 * Issue 24, items 4, 5 and 6, through the built CLI (`node bin/cascade.js`) with generated models
 * and real redis-servers: an --out no folder can be made under (/proc, where Node's recursive
 * mkdir loops) ends with one line and exit 2; a key list that fails part-way through its listing
 * marks the run failed in Redis with the reason, `cascade run` exits 1 with one line and `cascade
 * status` shows the run as failed and why; a run on its private Redis that fails says to run the
 * same command again, not `cascade retry` (that Redis is gone).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `cascade <args>` to its end (killed after `timeoutMs`: no exit code then); never rejects. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 90_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/cascade.js', ...args],
      { env: { ...process.env, CASCADE_DEBUG: '', REDIS_URL: '', ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

const work = withTempDir('failure-states');
const models = withModels(work);
const redis = withRedis();
let images: string;
let cascadeArgs: string[];

beforeAll(async () => {
  images = join(work.path, 'images');
  await mkdir(images);
  for (const [i, v] of [255, 0, 128, 64, 200, 30].entries()) {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: v, g: 255 - v, b: 0 } } })
      .png()
      .toBuffer();
    await writeFile(join(images, `img-${i}.png`), png);
  }
  const spec = async (name: string, path: string) => {
    const file = join(work.path, `${name}.json`);
    await writeFile(file, JSON.stringify(colourSpec(path, models.labels)));
    return file;
  };
  cascadeArgs = [
    '--little',
    await spec('little', models.colourLittle),
    '--big',
    await spec('big', models.colourBig),
    '--threshold',
    '0.9',
    '--batch-size',
    '2',
    '--no-progress',
  ];
});

describe('bounded output folder creation (item 4)', () => {
  it.skipIf(!existsSync('/proc/self'))(
    '--out under /proc: one line, exit 2, no endless mkdir',
    async () => {
      // Before the fix the command spun until the timeout killed it (no exit code).
      const r = await cli(['run', images, '--out', '/proc/cascade-no-such/out', ...cascadeArgs], {}, 60_000);
      expect(r.code, r.stderr).toBe(2);
      expect(
        r.stderr.split('\n').filter((l) => l.startsWith('cascade: ')),
        r.stderr,
      ).toEqual([
        'cascade: --out /proc/cascade-no-such/out is not writable: ENOENT: cannot create the folder /proc/cascade-no-such/out/_cascade: the filesystem refuses a new folder in /proc',
      ]);
    },
    90_000,
  );
});

describe('a listing that fails marks the run failed (item 5)', () => {
  it('a NUL byte on line 4 of a key list: exit 1 with one line, and status says failed and why', async () => {
    const list = join(images, 'keys.txt');
    await writeFile(list, ['img-0.png', 'img-1.png', 'img-2.png', 'img-\0-3.png', 'img-4.png', ''].join('\n'));
    const prefix = uniquePrefix('lf');
    const config = join(work.path, 'listing.json');
    await writeFile(config, JSON.stringify({ prefix }));
    const out = join(work.path, 'out-listing');
    const env = { REDIS_URL: redis.url };
    const r = await cli(['run', list, '--out', out, '--config', config, '--run-id', 'listing-1', ...cascadeArgs], env);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(
      lines.filter((l) => l.startsWith('cascade: ')),
      r.stderr,
    ).toEqual([
      `cascade: run listing-1 failed: listing failed: ${list}:4: the ref contains a NUL character (after 3 images); the output claim on ${out} stays with this run: once the source is fixed, the same command takes the run up again (or choose another --out, or pass --overwrite)`,
    ]);
    const status = await cli(['status', 'listing-1', '--json', '--prefix', prefix], env);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      runId: 'listing-1',
      state: 'failed',
      failedReason: `listing failed: ${list}:4: the ref contains a NUL character`,
    });
    const text = await cli(['status', 'listing-1', '--prefix', prefix], env);
    expect(text.stdout).toMatch(/^run listing-1 {2}failed {2}/);
    expect(text.stdout).toContain(`failed: listing failed: ${list}:4: the ref contains a NUL character`);
    const list2 = await cli(['status', '--prefix', prefix], env);
    expect(list2.stdout).toMatch(/listing-1 +failed /);

    // Fixed, the same command takes the run up again: the claim is its own, the failure cleared.
    await writeFile(list, ['img-0.png', 'img-1.png', 'img-2.png', 'img-4.png', ''].join('\n'));
    const again = await cli(['run', list, '--out', out, '--config', config, '--run-id', 'listing-1', ...cascadeArgs], env);
    expect(again.code, again.stderr).toBe(0);
    const done = await cli(['status', 'listing-1', '--json', '--prefix', prefix], env);
    expect(JSON.parse(done.stdout)).toMatchObject({ state: 'done', total: 4, done: 4 });
    expect(JSON.parse(done.stdout)).not.toHaveProperty('failedReason');
  }, 120_000);
});

describe('retry hints only where retry can work (item 6)', () => {
  it('a run on its private Redis whose batches fail for good says to run the same command again', async () => {
    const out = join(work.path, 'out-private');
    await mkdir(out, { recursive: true });
    // The run claims its location, then every part write fails.
    await writeFile(join(out, 'parts'), 'not a directory');
    const r = await cli(['run', images, '--out', out, '--run-id', 'private-1', ...cascadeArgs]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cascade: run private-1 failed: 3 batch\(es\) failed for good/);
    expect(r.stderr).toContain('once the cause is fixed, run the same command again (its private Redis is gone with this process');
    expect(r.stderr).not.toMatch(/cascade retry private-1/);
  }, 120_000);
});
