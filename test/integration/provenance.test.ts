/**
 * Provenance end to end: a run's summary names each stage's pinned model and how its parts were
 * computed, every result part names its writer, and `cascade verify` flags parts whose writer
 * used another model or showed a probe beyond the run's tolerance. Real redis-server and
 * onnxruntime on generated models.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { formatSummary } from '../../cli/format-summary.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import { ResultPart, type RunSummary } from '../../pipeline/results/manifest.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';

const work = withTempDir('provenance');
const redis = withRedis();
const models = withModels(work);
let images: string;
let out: string;
let summary: RunSummary;

const spec = async (name: string, path: string) => {
  const file = join(work.path, `${name}.json`);
  await writeFile(file, JSON.stringify(colourSpec(path, models.labels)));
  return file;
};

beforeAll(async () => {
  images = join(work.path, 'images');
  await mkdir(images);
  for (const [i, rgb] of [
    [255, 0, 0],
    [0, 255, 0],
    [128, 128, 128],
    [64, 64, 64],
  ].entries()) {
    const [r, g, b] = rgb as [number, number, number];
    await writeFile(
      join(images, `img-${i}.png`),
      await sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer(),
    );
  }
  const config = join(work.path, 'config.json');
  await writeFile(config, JSON.stringify({ redisUrl: redis.url, prefix: uniquePrefix('provenance'), batchSize: 2 }));
  out = join(work.path, 'out');
  summary = await runCommand(images, {
    out,
    config,
    little: await spec('little', models.colourLittle),
    big: await spec('big', models.colourBig),
    threshold: 0.9,
    progress: false,
    json: true,
  });
}, 120_000);

describe('provenance', () => {
  it('summary.json names each stage pinned model by content and how its parts were computed', async () => {
    const sha = async (path: string) =>
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
    expect(summary.stages.map((s) => s.model)).toEqual([
      { name: 'colour-little.onnx', path: models.colourLittle, sha256: await sha(models.colourLittle) },
      { name: 'colour-big.onnx', path: models.colourBig, sha256: await sha(models.colourBig) },
    ]);
    for (const stage of summary.stages) {
      // numerics auto (the default): native kernels, whose probe matches the exact reference on
      // every CPU for these float models.
      expect(stage.provenance).toEqual({
        numerics: 'auto',
        numericsUsed: ['native'],
        executionProviders: ['cpu'],
        onnxruntime: [expect.stringMatching(/^\d+\.\d+\.\d+$/)],
        cpus: [expect.stringMatching(/^\w+ \[/)],
        workers: 1,
        probeMaxDiff: 0,
        probeTolerance: 0.002,
      });
    }
    expect(formatSummary(summary)).toMatch(/; numerics auto \(native\) on cpu, onnxruntime /);
    const part = ResultPart.parse(JSON.parse(await readFile(join(out, 'parts', '00000000.stage0.json'), 'utf8')));
    expect(part.writer).toMatchObject({
      host: hostname(),
      pid: process.pid,
      provider: 'cpu',
      numerics: 'native',
      sha256: summary.stages[0]!.model!.sha256,
      probeMaxDiff: 0,
    });
  });

  it('cascade verify passes a clean run and flags parts whose writer used another model or drifted beyond the tolerance', async () => {
    // A copy of the run's output: the parts tampered with below must not be the ones other tests read.
    const run = await mkdtemp(join(work.path, 'out-tampered-'));
    await cp(out, run, { recursive: true });
    const manifest = join(run, 'manifest.jsonl');
    const clean = await verifyCommand({ manifest, source: images, json: true });
    expect(clean.ok).toBe(true);
    // The run's folder names the same manifest and parts.
    expect((await verifyCommand({ manifest: run, source: images, json: true })).provenance).toEqual(clean.provenance);
    expect(clean.provenance).toMatchObject({ ok: true, parts: (await readdir(join(run, 'parts'))).length, writers: 1, unrecorded: 0, mismatchedCount: 0 });

    // Two parts as a misbehaving worker would have written them.
    const tamper = async (file: string, change: (p: ResultPart) => void) => {
      const path = join(run, 'parts', file);
      const part = ResultPart.parse(JSON.parse(await readFile(path, 'utf8')));
      change(part);
      await writeFile(path, JSON.stringify(part));
    };
    await tamper('00000000.stage0.json', (p) => {
      p.writer!.probeMaxDiff = 0.15;
    });
    await tamper('00000001.stage0.json', (p) => {
      p.writer!.sha256 = 'f'.repeat(64);
    });
    process.exitCode = undefined;
    const report = await verifyCommand({ manifest, source: images, json: true });
    expect(process.exitCode).toBe(1);
    process.exitCode = undefined;
    expect(report.ok).toBe(false);
    expect(report.provenance!.mismatchedCount).toBe(2);
    expect(report.provenance!.mismatched.map((m) => [m.key, m.reason.replace(/ \(.*\)$/, '')])).toEqual([
      ['parts/00000000.stage0.json', "probe differed by 0.1500, beyond the run's tolerance 0.002"],
      ['parts/00000001.stage0.json', `model sha256 ffffffffffff, but the run pins ${summary.stages[0]!.model!.sha256.slice(0, 12)}`],
    ]);
    // The rows themselves are still complete: only the provenance fails.
    expect(report.counts).toEqual({ missing: 0, duplicate: 0, unknown: 0, invalid: 0 });
  });

  it('cascade verify takes exact or native parts under numerics auto, and only the pinned one otherwise', async () => {
    const run = await mkdtemp(join(work.path, 'out-numerics-'));
    await cp(out, run, { recursive: true });
    const manifest = join(run, 'manifest.jsonl');
    const rewrite = async (file: string, change: (o: Record<string, any>) => void) => {
      const data = JSON.parse(await readFile(file, 'utf8')) as Record<string, any>;
      change(data);
      await writeFile(file, JSON.stringify(data));
    };
    const parts = (await readdir(join(run, 'parts'))).filter((f) => f.endsWith('.json'));
    // A mixed fleet under auto: this worker fell back to exact kernels.
    for (const f of parts)
      await rewrite(join(run, 'parts', f), (p) => {
        p.writer.numerics = 'exact';
      });
    expect((await verifyCommand({ manifest, source: images, json: true })).provenance).toMatchObject({ ok: true, mismatchedCount: 0 });
    // The same parts in a run that pinned native kernels.
    await rewrite(join(run, 'summary.json'), (s) => {
      for (const stage of s.stages) stage.provenance.numerics = 'native';
    });
    process.exitCode = undefined;
    const report = await verifyCommand({ manifest, source: images, json: true });
    process.exitCode = undefined;
    expect(report.provenance).toMatchObject({ ok: false, mismatchedCount: parts.length });
    expect(report.provenance!.mismatched[0]!.reason).toMatch(/^numerics exact, but the run pins native /);
  });
});
