/**
 * What calibration reads and writes around the rules: the ground-truth CSV, the calibration/test
 * split, the probability cache, the curve CSV and SVG plot, and calib.json (its schema and its use
 * by the config). The rules themselves: calibration-rules.test.ts; chains: calibration-chain.test.ts;
 * the commands: integration/calibrate-cli.test.ts.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CalibrationFile } from '../../config/calibration.js';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { calibrate } from '../../pipeline/calibration/calibrate.js';
import { matchLabels, parseGroundTruth, splitCsvLine } from '../../pipeline/calibration/ground-truth.js';
import { modelFingerprint, ProbabilityCache } from '../../pipeline/calibration/prob-cache.js';
import { calibrationFile, calibrationPlot, curveCsv, curveRows, thin } from '../../pipeline/calibration/report.js';
import { splitForCalibration } from '../../pipeline/calibration/split.js';
import type { CalibrationEntry } from '../../pipeline/calibration/sweep.js';
import { escapeXml, lineChart, niceTicks } from '../../pipeline/plots/line-chart.js';
import { peaked } from '../helpers/probabilities.js';

const row = (...p: number[]) => Float32Array.from(p);
const costs = { littleGmacs: 1, bigGmacs: 10 };

// conf(maxprob) · little ok · big ok:  a .9 ✓✓ | b .8 ✓✗ | c .7 ✗✓ | d .6 ✗✓ | e .5 ✗✗
const table: CalibrationEntry[] = [
  { key: 'a', little: peaked(0, 0.9), big: peaked(0, 0.9), label: 0 },
  { key: 'b', little: peaked(0, 0.8), big: peaked(1, 0.8), label: 0 },
  { key: 'c', little: peaked(1, 0.7), big: peaked(2, 0.7), label: 2 },
  { key: 'd', little: peaked(0, 0.6), big: peaked(1, 0.6), label: 1 },
  { key: 'e', little: peaked(0, 0.5), big: peaked(1, 0.6), label: 2 },
];

describe('ground truth CSV', () => {
  it('parses the assets format, quoted fields and a BOM', () => {
    const truth = parseGroundTruth('\uFEFFfile,class_index,synset,name\nn1_a.JPEG,2,n1,"a, the shark"\n"sub/b ""x"".jpg",7,n2,b\n\n', 'gt.csv');
    expect([...truth]).toEqual([
      ['n1_a.JPEG', 2],
      ['sub/b "x".jpg', 7],
    ]);
    expect(splitCsvLine('a,"b,c",d')).toEqual(['a', 'b,c', 'd']);
  });

  it('names the problem: header, bad index, conflicting rows, unterminated quote', () => {
    expect(() => parseGroundTruth('name,synset\nx,y\n', 'gt.csv')).toThrow(/gt.csv: the header must name an image column .* and a class index column/);
    expect(() => parseGroundTruth('file,label\nx.jpg,cat\n', 'gt.csv')).toThrow('gt.csv:2: class index must be a non-negative integer, got "cat"');
    expect(() => parseGroundTruth('file,label\nx.jpg,1\nx.jpg,2\n', 'gt.csv')).toThrow('gt.csv:3: "x.jpg" is labeled both 1 and 2');
    expect(() => parseGroundTruth('file,label\n"x.jpg,1\n', 'gt.csv')).toThrow('gt.csv:2: unterminated quoted field');
    expect(() => parseGroundTruth('file,label\n', 'gt.csv')).toThrow('gt.csv: no labeled rows');
  });

  it('matches by relative path, then by an unambiguous file name', () => {
    const truth = new Map([
      ['dir/x.jpg', 1],
      ['y.jpg', 2],
      ['a/z.jpg', 3],
      ['b/z.jpg', 4],
    ]);
    expect(matchLabels(['dir/x.jpg', 'other/y.jpg', 'a/z.jpg', 'c/z.jpg', 'w.jpg'], truth)).toEqual([1, 2, 3, undefined, undefined]);
  });
});

describe('splitForCalibration', () => {
  const names = Array.from({ length: 101 }, (_, i) => `img-${i}.jpg`);

  it('is deterministic, independent of input order, and sized round(n · fraction)', () => {
    const a = splitForCalibration(names, (n) => n);
    const b = splitForCalibration([...names].reverse(), (n) => n);
    expect(a.calibration).toHaveLength(51);
    expect(a.test).toHaveLength(50);
    expect(new Set(a.calibration)).toEqual(new Set(b.calibration));
    expect([...a.calibration, ...a.test].sort()).toEqual([...names].sort());
    // Keeps the caller's order inside each part.
    expect(a.calibration).toEqual(names.filter((n) => a.calibration.includes(n)));
  });

  it('does not follow name order (ImageNet names sort by class)', () => {
    const { calibration } = splitForCalibration(names, (n) => n);
    expect(calibration).not.toEqual(names.slice(0, 51));
    expect(calibration.some((n) => names.indexOf(n) > 60)).toBe(true);
  });

  it('fraction 1 keeps everything for calibration; 0 is refused', () => {
    expect(splitForCalibration(names, (n) => n, 1).test).toEqual([]);
    expect(() => splitForCalibration(names, (n) => n, 0)).toThrow('calibration fraction must be in (0, 1], got 0');
  });
});

describe('curve export and plot', () => {
  const out = calibrate(table, [], costs, { rule: 'no-loss' });

  it('exports every metric, CSV with a header and empty cells for missing accuracy', () => {
    const rows = curveRows(out);
    expect(new Set(rows.map((r) => r.metric))).toEqual(new Set(['maxprob', 'margin', 'entropy']));
    const csv = curveCsv(rows).trim().split('\n');
    expect(csv[0]).toBe('metric,threshold,fractionToBig,gmacsPerImage,saved,accepted,agreement,cascadeAccuracy');
    expect(csv).toHaveLength(rows.length + 1);
    const unlabeled = curveCsv(
      curveRows(
        calibrate(
          table.map(({ label: _l, ...e }) => e),
          [],
          costs,
          { rule: 'label-free' },
        ),
      ),
    );
    expect(unlabeled.split('\n')[1]!.endsWith(',')).toBe(true);
  });

  it('thins long curves evenly, keeping both ends and a chosen point', () => {
    const pts = Array.from({ length: 10_001 }, (_, i) => ({ fractionToBig: i / 10_000 }));
    const keep = pts[4321]!;
    const thinned = thin(pts, 101, keep);
    expect(thinned.length).toBeGreaterThan(95);
    expect(thinned.length).toBeLessThanOrEqual(103);
    expect(thinned[0]).toBe(pts[0]);
    expect(thinned.at(-1)).toBe(pts.at(-1));
    expect(thinned).toContain(keep);
  });

  it('the SVG marks the chosen point and the big model line', () => {
    const svg = calibrationPlot(out, 'little → big <test>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('little → big &lt;test&gt;');
    expect(svg).toContain(`no-loss: ${out.chosen.metric} ≥ ${out.chosen.threshold.toFixed(3)}`);
    expect(svg).toContain('big alone 60.0%');
    expect(svg).toContain('oracle router');
    expect((svg.match(/<path /g) ?? []).length).toBe(3);
  });

  it('line chart basics: nice ticks, escaping', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.13, 1.74, 6)).toEqual([0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6]);
    expect(niceTicks(3, 3)).toEqual([3]);
    expect(escapeXml(`a<b & "c"`)).toBe('a&lt;b &amp; &quot;c&quot;');
    expect(lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [] })).toContain('</svg>');
  });

  it('calib.json validates against its schema', () => {
    const file = calibrationFile(
      out,
      { little: { name: 'l', path: '/m/l.onnx' }, big: { name: 'b', path: '/m/b.onnx' } },
      { calibrationFraction: 1, skippedImages: 0, files: { curveJson: 'c.curve.json', curveCsv: 'c.curve.csv', plot: 'c.svg' } },
    );
    expect(CalibrationFile.parse(file)).toEqual(file);
    expect(file.expected.accuracy).toBeCloseTo(0.6);
    expect(file.test).toBeNull();
  });
});

describe('probability cache and calib.json in the config', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-calcache-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips rows and errors; damaged entries read as absent', async () => {
    const cache = new ProbabilityCache(join(dir, 'cache'));
    expect(await cache.read('nothing')).toBeNull();
    const scored = {
      classes: 3,
      probs: new Map([
        ['x', row(0.1, 0.2, 0.7)],
        ['y', row(1, 0, 0)],
      ]),
      errors: new Map([['z', 'decode failed']]),
    };
    await cache.write('fp1', 'm.onnx', scored);
    const back = await cache.read('fp1');
    expect(back?.classes).toBe(3);
    expect([...back!.probs.keys()]).toEqual(['x', 'y']);
    expect([...back!.probs.get('x')!]).toEqual([...row(0.1, 0.2, 0.7)]);
    expect(back?.errors.get('z')).toBe('decode failed');
    await writeFile(join(dir, 'cache', 'fp1.f32'), Buffer.alloc(5));
    expect(await cache.read('fp1')).toBeNull();
  });

  it('the fingerprint changes with model bytes, preprocessing and numerics', async () => {
    const path = join(dir, 'm.onnx');
    await writeFile(path, 'model-a');
    const spec = { path, preprocess: { colorOrder: 'RGB' }, output: 'auto', graphOptimization: 'all' } as never;
    const a = await modelFingerprint(spec, 'exact');
    expect(await modelFingerprint(spec, 'exact')).toBe(a);
    expect(await modelFingerprint(spec, 'native')).not.toBe(a);
    expect(await modelFingerprint({ ...(spec as object), preprocess: { colorOrder: 'BGR' } } as never, 'exact')).not.toBe(a);
    await writeFile(path, 'model-b');
    expect(await modelFingerprint(spec, 'exact')).not.toBe(a);
  });

  it('--calibration sets threshold and metric, flags win, mismatched models and send-all are refused', async () => {
    const little = join(dir, 'little.onnx');
    const big = join(dir, 'big.onnx');
    const out = calibrate(table, [], costs, { rule: 'no-loss' });
    const file = calibrationFile(
      out,
      { little: { name: 'l', path: '/elsewhere/little.onnx' }, big: { name: 'b', path: '/elsewhere/big.onnx' } },
      { calibrationFraction: 1, skippedImages: 0, files: { curveJson: 'a', curveCsv: 'b', plot: 'c' } },
    );
    const calib = join(dir, 'calib.json');
    await writeFile(calib, JSON.stringify(file));
    const env = {};
    const cfg = await loadConfig({ calibration: calib, overrides: { little, big }, env, cwd: dir });
    expect([cfg.threshold, cfg.metric]).toEqual([file.threshold, file.metric]);
    const flagged = await loadConfig({ calibration: calib, overrides: { little, big, threshold: 0.123 }, env, cwd: dir });
    expect(flagged.threshold).toBe(0.123);

    await expect(loadConfig({ calibration: calib, overrides: { little: join(dir, 'other.onnx'), big }, env, cwd: dir })).rejects.toThrow(
      /does not fit this run: it was made for little model little.onnx, but this run's little model is other.onnx/,
    );
    await writeFile(calib, JSON.stringify({ ...file, threshold: 2 }));
    await expect(loadConfig({ calibration: calib, overrides: { little, big }, env, cwd: dir })).rejects.toThrow(/the cascade would be big-only/);
    await writeFile(calib, JSON.stringify({ threshold: 0.5 }));
    const err = await loadConfig({ calibration: calib, overrides: { little, big }, env, cwd: dir }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/is not a calib.json written by `cascade calibrate`:\n {2}version:/);
    expect(JSON.parse(await readFile(calib, 'utf8'))).toEqual({ threshold: 0.5 });
  });

  it('a guaranteed calib.json holds audits to its bound; a file from before guarantees still loads, with its point estimate', async () => {
    const little = join(dir, 'little.onnx');
    const big = join(dir, 'big.onnx');
    // 20 agreeing images certify 85% (0 of 20: P(Bin(20, 0.15) = 0) = 0.039 ≤ 0.05).
    const agreeing: CalibrationEntry[] = Array.from({ length: 20 }, (_, i) => ({
      key: `k${i}`,
      little: Float32Array.from([0.5 + i / 50, (0.5 - i / 50) / 2, (0.5 - i / 50) / 2]),
      big: Float32Array.from([0.9, 0.05, 0.05]),
    }));
    const out = calibrate(agreeing, [], costs, { targetAgreement: 0.85, metrics: ['maxprob'] });
    const file = calibrationFile(
      out,
      { little: { name: 'l', path: '/elsewhere/little.onnx' }, big: { name: 'b', path: '/elsewhere/big.onnx' } },
      { calibrationFraction: 1, skippedImages: 0, files: { curveJson: 'a', curveCsv: 'b', plot: 'c' } },
    );
    expect(file.guarantee).toMatchObject({ kind: 'agreement', bound: 0.85, delta: 0.05, method: 'ltt' });
    expect(file.settings).toMatchObject({ delta: 0.05, method: 'ltt' });
    expect(file.expected.agreement).toBe(1);
    const calib = join(dir, 'calib-guaranteed.json');
    await writeFile(calib, JSON.stringify(file));
    const config = join(dir, 'audit.json');
    await writeFile(config, JSON.stringify({ audit: { fraction: 0.1 } }));
    const env = {};
    expect((await loadConfig({ file: config, calibration: calib, overrides: { little, big }, env, cwd: dir })).audit?.expectAgreement).toBe(0.85);

    // The same file as written before issue 18: no guarantee, no delta or method, a point-estimate rule.
    const { guarantee: _g, ...old } = file;
    const { delta: _d, method: _m, ...oldSettings } = file.settings;
    await writeFile(calib, JSON.stringify({ ...old, rule: 'label-free', settings: oldSettings }));
    expect(CalibrationFile.safeParse(JSON.parse(await readFile(calib, 'utf8'))).success).toBe(true);
    expect((await loadConfig({ file: config, calibration: calib, overrides: { little, big }, env, cwd: dir })).audit?.expectAgreement).toBe(1);
  });
});
