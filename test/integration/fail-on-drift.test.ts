/**
 * `--fail-on-drift` on the built CLI (child processes, real redis-server, the generated colour
 * models). Every accepted image is audited (fraction 1) against a promise of 95% agreement. On
 * peach images (r 1, g 0.7, b 0.4) the little model says red with confidence 0.91 and the big
 * model says other, so half the audits disagree and the promise cannot hold: DRIFT. Pure red
 * images agree.
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
let models: TestModels;
let redis: TestRedis;
let drifting: string;
let steady: string;

/** `cascade <args>`: exit code, stdout and stderr. */
async function cascade(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, REDIS_URL: '', CASCADE_LOG_LEVEL: 'warn' };
  return promisify(execFile)(process.execPath, ['bin/cascade.js', ...args], { env, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

async function writeConfig(extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  const config = {
    little: colourSpec(models.colourLittle, models.labels),
    big: colourSpec(models.colourBig, models.labels),
    threshold: 0.8,
    batchSize: 4,
    redisUrl: redis.url,
    prefix: uniquePrefix('drift'),
    audit: { fraction: 1, expectAgreement: 0.95 },
    ...extra,
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

async function writeImages(folder: string, colours: Array<[string, { r: number; g: number; b: number }]>, each: number): Promise<void> {
  await mkdir(folder);
  for (const [name, background] of colours)
    for (let i = 0; i < each; i++)
      await writeFile(
        join(folder, `${name}-${i}.png`),
        await sharp({ create: { width: 8, height: 8, channels: 3, background } })
          .png()
          .toBuffer(),
      );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-drift-'));
  models = await writeTestModels(join(dir, 'models'));
  drifting = join(dir, 'drifting');
  steady = join(dir, 'steady');
  const red = { r: 255, g: 0, b: 0 };
  await writeImages(
    drifting,
    [
      ['red', red],
      ['peach', { r: 255, g: 178, b: 102 }],
    ],
    8,
  );
  await writeImages(steady, [['red', red]], 16);
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

const DRIFT_LINE =
  /^cascade: run (\w+): audit DRIFT: 8\/16 audited images agree \(50\.0%, 95% CI \d+\.\d%–\d+\.\d%\), below the promised 95\.0% \(--fail-on-drift\)$/m;

describe('--fail-on-drift', () => {
  it('cascade run exits 1 with one line when the audit says DRIFT; the manifest is complete and the summary printed', async () => {
    const config = await writeConfig();
    const out = join(dir, 'out-drift');
    const r = await cascade(['run', drifting, '--out', out, '--config', config, '--fail-on-drift']);
    expect(r.code, r.stderr).toBe(1);
    const runId = r.stderr.match(DRIFT_LINE)?.[1];
    expect(runId, r.stderr).toBeDefined();
    expect(r.stderr.split('\n').filter((l) => l.startsWith('cascade:'))).toHaveLength(1);
    expect(r.stdout).toMatch(/audit: 8\/16 agree .*below the promised 95\.0%: DRIFT/);
    expect((await readFile(join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(16);

    // The run's state stays on the shared Redis: cascade status --watch says the same, exit 1.
    const status = await cascade(['status', runId!, '--watch', '--interval', '0.1', '--config', config, '--fail-on-drift']);
    expect(status.code, status.stderr).toBe(1);
    expect(status.stderr).toMatch(DRIFT_LINE);
    // Without the flag, the same done run is exit 0.
    expect((await cascade(['status', runId!, '--watch', '--config', config])).code).toBe(0);
  });

  it('without --fail-on-drift the drifting run exits 0 (the summary still says DRIFT)', async () => {
    const r = await cascade(['run', drifting, '--out', join(dir, 'out-no-flag'), '--config', await writeConfig()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/: DRIFT/);
  });

  it('a run whose audits agree exits 0 with --fail-on-drift', async () => {
    const r = await cascade(['run', steady, '--out', join(dir, 'out-steady'), '--config', await writeConfig(), '--fail-on-drift']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/audit: 16\/16 agree .*promised 95\.0%: ok/);
  });

  it('is refused (exit 2, one line) on a run that audits nothing', async () => {
    const r = await cascade(['run', steady, '--out', join(dir, 'out-no-audit'), '--config', await writeConfig({ audit: undefined }), '--fail-on-drift']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'cascade: --fail-on-drift needs audits: set audit: { fraction, expectAgreement } in the config (the agreement the calibration promised)\n',
    );
  });
});
