/**
 * The run view (queue/run-view.ts) end to end: a real `cascade worker` process labels two runs
 * submitted with `cascade submit` on a real redis-server, one clean and one whose 12 images are
 * all error rows (9 outside the worker's localRoots: forbidden; 3 missing: not-found), beside a
 * third whose merge failed (written straight into the tracker: a merge cannot be made to fail
 * for good here without waiting out its retries). Then the
 * built CLI's `cascade status` (list, detail, --json, --fail-on-errors) and the dashboard's Runs
 * page, loaded in headless Chromium (--dump-dom and a screenshot checked with sharp), show both.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { RunStatus } from '../../cli/format-status.js';
import { mergeJobId } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { RunView } from '../../queue/run-view.js';
import { dumpDom, screenshot } from '../helpers/chromium.js';
import { spawnCascade } from '../helpers/cli-process.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';
import { fakeRunSpec, fakeStages } from '../helpers/run-spec.js';

const env = { REDIS_URL: '', CASCADE_LOG_LEVEL: 'warn', CASCADE_DASHBOARD_TOKEN: '' };

/** `cascade <args>` of the built CLI: exit code, stdout and stderr. */
async function cascade(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, ...env }, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

const png = (r: number, g: number, b: number) =>
  sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();

const work = withTempDir('runview');
const redis = withRedis();
const models = withModels(work);
let config: string;
const prefix = uniquePrefix('runview');

/** The run whose merge failed: its reason holds markup, which the Runs page must escape. */
async function writeFailedRun(): Promise<void> {
  const stages = fakeStages({ dir: '/m/', bigGmacs: 4 });
  stages[0]!.threshold = 0.9;
  const spec = fakeRunSpec('rv-failed', { source: '/in/failed/', out: '/out/failed/', stages, createdAt: '2026-01-01T00:00:00.000Z' });
  const connection = connectRedis(redis.url);
  try {
    const tracker = new RunTracker(connection, prefix);
    await tracker.create(spec);
    await tracker.finishListing('rv-failed', 4, 1);
    await tracker.finishPart('rv-failed', { id: 'b0s0', stage: 0, final: 4, counts: { images: 4, accepted: 4, forwarded: 0, errors: 0 } });
    await tracker.markMergeFailed('rv-failed', 'ENOSPC <b>no space</b> left on device');
  } finally {
    connection.disconnect();
  }
}

beforeAll(async () => {
  const root = join(work.path, 'images');
  const clean = join(root, 'clean');
  const outside = join(work.path, 'outside');
  await mkdir(clean, { recursive: true });
  await mkdir(outside);
  // Red stays with the little model at threshold 0.9, grey goes on to big: 2 of 6 routed.
  for (const [name, rgb] of [
    ['red-0', [255, 0, 0]],
    ['red-1', [255, 0, 0]],
    ['red-2', [255, 0, 0]],
    ['red-3', [255, 0, 0]],
    ['grey-0', [128, 128, 128]],
    ['grey-1', [96, 96, 96]],
  ] as const)
    await writeFile(join(clean, `${name}.png`), await png(rgb[0], rgb[1], rgb[2]));
  // Valid images the worker may not read (outside its localRoots), and keys for files that do not exist.
  const keys: string[] = [];
  for (let i = 0; i < 9; i++) {
    await writeFile(join(outside, `secret-${i}.png`), await png(255, 0, 0));
    keys.push(join(outside, `secret-${i}.png`));
  }
  for (let i = 0; i < 3; i++) keys.push(join(root, `missing-${i}.png`));
  await writeFile(join(work.path, 'keys.txt'), `${keys.join('\n')}\n`);

  config = join(work.path, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify({
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(models.colourBig, models.labels),
      threshold: 0.9,
      batchSize: 4,
      redisUrl: redis.url,
      prefix,
      sources: { localRoots: [root] },
    }),
  );
  const worker = spawnCascade(['worker', 'little', 'big', 'merge', '--config', config], { ...env, CASCADE_LOG_LEVEL: 'info' });
  try {
    await worker.waitFor(/worker ready/);
    for (const [runId, source] of [
      ['rv-clean', clean],
      ['rv-errors', join(work.path, 'keys.txt')],
    ]) {
      const submitted = await cascade(['submit', source!, '--out', join(work.path, 'out', runId!), '--config', config, '--run-id', runId!]);
      expect(submitted.code, submitted.stderr).toBe(0);
      // --watch returns once the run is merged, with or without error rows.
      const watched = await cascade(['status', runId!, '--watch', '--interval', '0.2', '--config', config]);
      expect(watched.code, watched.stderr).toBe(0);
    }
  } finally {
    await worker.stop();
  }
  await writeFailedRun();
}, 180_000);

describe('cascade status shows the run view', () => {
  it('--json list: done and done-with-errors, errors by kind, routed, cost saved (measured; unknown where nothing was inferred)', async () => {
    const r = await cascade(['status', '--json', '--config', config]);
    expect(r.code, r.stderr).toBe(0);
    const runs = RunView.array().parse(JSON.parse(r.stdout));
    const byId = new Map(runs.map((v) => [v.runId, v]));
    expect(byId.get('rv-errors')).toMatchObject({
      state: 'done-with-errors',
      total: 12,
      done: 12,
      errors: 12,
      errorsByKind: { forbidden: 9, 'not-found': 3 },
      routed: 0,
      costSaved: null,
      etaSeconds: 0,
    });
    expect(byId.get('rv-errors')).not.toHaveProperty('failedReason');
    expect(byId.get('rv-clean')).toMatchObject({ state: 'done', total: 6, done: 6, errors: 0, errorsByKind: {} });
    expect(byId.get('rv-clean')!.costSaved).toEqual(expect.any(Number));
    expect(byId.get('rv-clean')!.routed).toBeCloseTo(2 / 6, 10);
    expect(byId.get('rv-failed')).toMatchObject({ state: 'failed', failedReason: 'merge failed: ENOSPC <b>no space</b> left on device', etaSeconds: null });
  });

  it('text list and detail name the error kinds; --json detail is a RunStatus with the view', async () => {
    const list = await cascade(['status', '--config', config]);
    expect(list.stdout).toMatch(/^RUN\s+STATE\s+PROGRESS\s+ERRORS\s+ROUTED\s+SAVED\s+ETA\s+STARTED\s+OUT$/m);
    expect(list.stdout).toMatch(/^rv-errors\s+done-with-errors\s+12\/12\s+12 \(forbidden 9, not-found 3\)\s+0\.0%\s+—\s+\S+Z\s+\S+rv-errors$/m);
    expect(list.stdout).toMatch(/^rv-clean\s+done\s+6\/6\s+0\s+33\.3%\s+-?\d+\.\d%\s+\S+Z\s+\S+rv-clean$/m);
    expect(list.stdout).toMatch(/^rv-failed\s+failed\s+4\/4\s+0\s+0\.0%\s+—\s+\S+Z\s+\/out\/failed\/$/m);
    const failed = await cascade(['status', 'rv-failed', '--config', config]);
    expect(failed.stdout).toMatch(/^\S+\s+100\.0% {2}4\/4 images {2}\S+ images\/s {2}failed: merge failed: ENOSPC <b>no space<\/b> left on device$/m);
    const detail = await cascade(['status', 'rv-errors', '--config', config]);
    expect(detail.stdout).toMatch(/^run rv-errors {2}done-with-errors /m);
    expect(detail.stdout).toContain('  errors 12 (forbidden 9, not-found 3)  routed to big 0.0%  cost saved —\n');
    const json = RunStatus.parse(JSON.parse((await cascade(['status', 'rv-errors', '--json', '--config', config])).stdout));
    expect(json).toMatchObject({ state: 'done-with-errors', errorsByKind: { forbidden: 9, 'not-found': 3 } });
    expect(json.stages.map((s) => [s.name, s.errors])).toEqual([
      ['little', 12],
      ['big', 0],
    ]);
  });

  it('--fail-on-errors: exit 1 with one line when a shown run is done-with-errors or failed, 0 for a clean one', async () => {
    const list = await cascade(['status', '--fail-on-errors', '--config', config]);
    expect(list.code).toBe(1);
    expect(list.stderr).toBe(
      'cascade: run rv-failed failed: merge failed: ENOSPC <b>no space</b> left on device; run rv-errors done with 12 (forbidden 9, not-found 3) error rows (--fail-on-errors)\n',
    );
    const one = await cascade(['status', 'rv-errors', '--watch', '--fail-on-errors', '--config', config]);
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/^cascade: run rv-errors done with 12 .*\(--fail-on-errors\)\n$/);
    const clean = await cascade(['status', 'rv-clean', '--fail-on-errors', '--config', config]);
    expect(clean.code, clean.stderr).toBe(0);
    // Without the flag, a run with errors is still exit 0.
    expect((await cascade(['status', '--config', config])).code).toBe(0);
  });
});

describe('cascade dashboard: the Runs page in headless Chromium', () => {
  it('lists the runs with their state, errors by kind and links to their jobs; the screenshot is not blank', async () => {
    const dashboard = spawnCascade(['dashboard', '--port', '0', '--config', config], { ...env, CASCADE_LOG_LEVEL: 'info' });
    try {
      const port = Number((await dashboard.waitFor(/dashboard on http:\/\/127\.0\.0\.1:(\d+)\//))[1]);
      const url = `http://127.0.0.1:${port}/runs`;
      const dom = await dumpDom(url);
      expect(dom).toMatch(/<tr class="run" data-run="rv-errors" data-state="done-with-errors" data-errors="12">/);
      const row = dom.slice(dom.indexOf('data-run="rv-errors"'));
      expect(row.slice(0, row.indexOf('</tr>'))).toMatch(
        /<span class="badge">done-with-errors<\/span>.*12\/12.*12 \(forbidden 9, not-found 3\).*0\.0%.*—.*href="queue\/merge\/rv-errors-merge"[^>]*>merge<\/a>.*href="queue\/stage-little\?status=failed"[^>]*>little<\/a>.*href="queue\/stage-big\?status=failed"[^>]*>big<\/a>/s,
      );
      expect(dom).toMatch(/<tr class="run" data-run="rv-clean" data-state="done" data-errors="0">.*<span class="badge">done<\/span>.*6\/6.*33\.3%/s);
      // The failed run's reason, escaped: no <b> element comes from Redis data.
      expect(dom).toContain('merge failed: ENOSPC &lt;b&gt;no space&lt;/b&gt; left on device');
      expect(dom).not.toContain('<b>');
      // The merge link opens the run's merge job in bull-board: the job is there.
      expect(mergeJobId('rv-errors')).toBe('rv-errors-merge');
      const job = await fetch(`http://127.0.0.1:${port}/api/queues/merge/rv-errors-merge`);
      expect(job.status).toBe(200);
      expect(((await job.json()) as { job: { id: string } }).job.id).toBe('rv-errors-merge');
      // bull-board's header links to the Runs page.
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toContain('"miscLinks":[{"text":"Runs","url":"/runs"}]');

      const file = join(work.path, 'runs.png');
      await screenshot(url, file, 1200, 800);
      const image = sharp(file);
      expect(await image.metadata()).toMatchObject({ format: 'png', width: 1200, height: 800 });
      const stats = await image.stats();
      // A blank (one-colour) page has no variance; the table, badges and bars give plenty.
      expect(Math.max(...stats.channels.slice(0, 3).map((c) => c.stdev))).toBeGreaterThan(10);
      // The done-with-errors run's orange bar (#f97316) and the done run's green one (#22c55e) are drawn.
      const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
      const count = (r: number, g: number, b: number) => {
        let n = 0;
        for (let i = 0; i < data.length; i += info.channels)
          if (Math.abs(data[i]! - r) < 16 && Math.abs(data[i + 1]! - g) < 16 && Math.abs(data[i + 2]! - b) < 16) n++;
        return n;
      };
      expect(count(0xf9, 0x73, 0x16)).toBeGreaterThan(1000);
      expect(count(0x22, 0xc5, 0x5e)).toBeGreaterThan(1000);
      expect(count(0xef, 0x44, 0x44)).toBeGreaterThan(1000);
    } finally {
      await dashboard.stop();
    }
  }, 120_000);
});
