/**
 * `cascade frontier` end to end, as a child process of the built CLI, on generated models and
 * images whose answers are known (helpers/colour-fixture.ts: 12 saturated colours the little
 * model is ≥ 0.996 sure of, 6 greys it is ≤ 0.72 sure of and mostly wrong about, 2 broken files).
 *
 * - little: the colour little model. big: the colour big model (right on all 18). dear: a slow
 *   model with big's exact answers (helpers/slow-models.ts).
 * - The first tests seed the timing cache (little 2 ms, big 6 ms, dear 102 ms per image), so
 *   which configuration wins is the test's arithmetic, not this machine's noise: little → big at
 *   maxprob ≥ 0.9 sends the 6 greys on (2 + 6/18 × 6 = 4 ms) and is right on all 18, so it beats
 *   big alone and dear alone, and chains through dear lose to it.
 * - The last tests leave the cache empty, so the command probes the models itself.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FrontierReport } from '../../cli/commands/frontier.js';
import { cpuDescription, defaultTimingCacheDir, type ModelTiming, writeTimingCache } from '../../pipeline/cost/model-timing.js';
import { colourSpec, writeColourImages } from '../helpers/colour-fixture.js';
import { withModels, withTempDir } from '../helpers/fixtures.js';
import { writeSlowModels } from '../helpers/slow-models.js';

const exec = promisify(execFile);
const work = withTempDir('frontier');
const models = withModels(work);
let images: string;
let labels: string;
const specs: Record<'little' | 'big' | 'dear', string> = { little: '', big: '', dear: '' };

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/** A cache home of its own per test group, so seeded and probed timings never mix. */
function cacheHome(name: string): string {
  return join(work.path, `cache-${name}`);
}

async function seed(home: string, name: keyof typeof specs, decodeSeconds: number, inferSeconds: number): Promise<void> {
  const spec = JSON.parse(await readFile(specs[name], 'utf8')) as { path: string };
  const timing: ModelTiming = {
    sha256: await sha256(spec.path),
    numerics: 'exact',
    provider: 'cpu',
    workerClass: 'cpu',
    cpu: cpuDescription(),
    decodeSeconds,
    inferSeconds,
    images: 16,
    batchSize: 32,
    measuredAt: '2026-01-01T00:00:00.000Z',
    source: 'probe',
  };
  await writeTimingCache(defaultTimingCacheDir({ XDG_CACHE_HOME: home }), timing);
}

function frontier(home: string, args: string[]) {
  return exec(process.execPath, ['bin/cascade.js', 'frontier', '--images', images, '--no-progress', ...args], {
    // CASCADE_CACHE (set for every test by isolate-env) wins over XDG_CACHE_HOME: both name this group's home.
    env: { ...process.env, XDG_CACHE_HOME: home, CASCADE_CACHE: join(home, 'cascade'), CASCADE_LOG_LEVEL: 'warn' },
  });
}

beforeAll(async () => {
  images = join(work.path, 'images');
  await writeColourImages(images);
  labels = join(work.path, 'groundtruth.csv');
  // Classes: red 0, green 1, blue 2, other 3; every grey is "other".
  const rows = ['file,class_index', ...[0, 1, 2, 3, 4].map((i) => `red-${i}.png,0`), ...[0, 1, 2, 3].map((i) => `green-${i}.png,1`)];
  rows.push(...[0, 1, 2].map((i) => `blue-${i}.png,2`), ...[0, 64, 96, 128, 160, 192].map((v) => `grey-${v}.png,3`));
  await writeFile(labels, `${rows.join('\n')}\n`);
  const slow = await writeSlowModels(join(work.path, 'slow'), { k: 1024, matmuls: 4 });
  const paths = { little: models.colourLittle, big: models.colourBig, dear: slow.big };
  for (const name of Object.keys(specs) as Array<keyof typeof specs>) {
    specs[name] = join(work.path, `${name}.json`);
    await writeFile(specs[name], JSON.stringify({ name, ...colourSpec(paths[name], models.labels) }));
  }
  const home = cacheHome('seeded');
  await seed(home, 'little', 0.001, 0.001);
  await seed(home, 'big', 0.002, 0.004);
  await seed(home, 'dear', 0.002, 0.1);
});

describe('cascade frontier with cached timings', () => {
  it('orders the models by measured cost, prices each configuration and marks what the pair beats', async () => {
    const out = join(work.path, 'out');
    const { stdout } = await frontier(cacheHome('seeded'), [
      '--models',
      specs.dear,
      specs.big,
      specs.little,
      '--labels',
      labels,
      '--threshold',
      '0.9',
      '--out',
      out,
      '--json',
    ]);
    const report = JSON.parse(stdout) as FrontierReport;
    expect(report.models.map((m) => m.name)).toEqual(['little', 'big', 'dear']);
    expect(report).toMatchObject({ quality: 'top-1', images: 18 });
    const row = Object.fromEntries(report.rows.map((r) => [r.config, r]));
    expect(Object.keys(row)).toEqual(['little', 'big', 'dear', 'little → big', 'little → dear', 'big → dear', 'little → big → dear']);
    expect(row['little → big']).toMatchObject({ verdict: 'frontier', quality: 1, reach: [1, 6 / 18], thresholds: [0.9], metric: 'maxprob' });
    expect(row['little → big']!.secondsPerImage).toBeCloseTo(0.002 + (6 / 18) * 0.006, 12);
    expect(row['little → big']!.pricePerMillion).toBeCloseTo(((0.002 + (6 / 18) * 0.006) * 0.045 * 1e6) / 3600, 9);
    expect(row.little).toMatchObject({ verdict: 'frontier', quality: 13 / 18 });
    for (const loser of ['big', 'dear', 'little → dear', 'big → dear', 'little → big → dear']) {
      expect(row[loser]).toMatchObject({ verdict: 'dominated', dominatedBy: 'little → big' });
    }
    const svg = await readFile(join(out, 'frontier.svg'), 'utf8');
    expect(svg).toContain('little → big at maxprob ≥ 0.9');
    expect((await readFile(join(out, 'frontier.png'))).subarray(1, 4).toString()).toBe('PNG');
    expect(JSON.parse(await readFile(join(out, 'frontier.json'), 'utf8'))).toEqual(report);
  });

  it('prints the table and says in words what beats each dominated configuration; without labels judges by agreement with the dearest', async () => {
    const { stdout } = await frontier(cacheHome('seeded'), ['--models', specs.little, specs.big, specs.dear, '--labels', labels, '--threshold', '0.9']);
    expect(stdout).toMatch(/^config\s+thresholds\s+reach\s+s\/img\s+USD\/M img\s+GMACs\s+top-1\s+verdict$/m);
    expect(stdout).toContain('dear alone is dominated by little → big at maxprob ≥ 0.9: it costs 25.50× as much for top-1 100.0% vs 100.0%');
    expect(stdout).toContain('little: decode 1.0 ms + infer 1.0 ms cpu per image');
    const unlabeled = JSON.parse(
      (await frontier(cacheHome('seeded'), ['--models', specs.little, specs.dear, '--threshold', '0.9', '--json'])).stdout,
    ) as FrontierReport;
    expect(unlabeled.quality).toBe('agreement with dear');
    expect(unlabeled.rows.find((r) => r.config === 'little')!.quality).toBeCloseTo(13 / 18, 12);
  });

  it('refuses bad input in one line with exit 2', async () => {
    const err = await frontier(cacheHome('seeded'), ['--models', specs.little, join(work.path, 'missing.onnx')]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr.trim().split('\n')).toHaveLength(1);
    expect((err as { stderr: string }).stderr).toMatch(/^cascade: .*missing\.onnx/);
  });
});

describe('cascade frontier probing the models itself', () => {
  it('times each model on this machine, stores the timings, and finds the slow model dearest whatever order it is given in', async () => {
    const home = cacheHome('probed');
    const { stdout } = await frontier(home, ['--models', specs.dear, specs.little, '--threshold', '0.9', '--probe-images', '8', '--json']);
    const report = JSON.parse(stdout) as FrontierReport;
    expect(report.models.map((m) => m.name)).toEqual(['little', 'dear']);
    const [little, dear] = report.models.map((m) => m.timing);
    expect(dear!.inferSeconds).toBeGreaterThan(10 * little!.inferSeconds);
    expect(little).toMatchObject({ source: 'probe', images: 8, cpu: cpuDescription(), provider: 'cpu' });
    expect(await readdir(defaultTimingCacheDir({ XDG_CACHE_HOME: home }))).toHaveLength(2);
  });

  it('stops a probe past --probe-timeout with a one-line error, exit 2', async () => {
    // The slow model's warm-up call alone is 4·10⁹ multiply-adds: tens of ms on any CPU.
    const err = await frontier(cacheHome('timeout'), ['--models', specs.dear, '--probe-timeout', '0.02']).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 2, stderr: 'cascade: timing dear took longer than 0.02 s; give fewer probe images\n' });
  });
});
