/**
 * Run plots: confidence histogram binning and SVG, PNG rasterisation with sharp, and the plots
 * step after the merge writing confidence.svg/png (and the calibration curve when the run had a calibration) from
 * hand-made result parts in a real local store.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibFile } from '../helpers/calib-file.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import type { PartRow, ResultPart } from '../../pipeline/results/manifest.js';
import { partKey, RUN_CALIBRATION_KEY } from '../../pipeline/results/output-layout.js';
import { mergeRun } from '../../pipeline/results/merge-run.js';
import { drawRunPlots } from '../../pipeline/plots/run-plots.js';
import type { ObjectStore } from '../../pipeline/storage/object-store.js';
import { addConfidence, emptyHistogram, histogramSvg } from '../../pipeline/plots/histogram.js';
import { readRunCalibration } from '../../pipeline/plots/run-calibration.js';
import { svgToPng } from '../../pipeline/plots/svg-to-png.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-plots-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Bars of an SVG histogram as [stage, bin, count]. */
function bars(svg: string): Array<[string, number, number]> {
  return [...svg.matchAll(/class="bar" data-stage="([^"]*)" data-bin="(\d+)" data-count="(\d+)"/g)].map((m) => [m[1]!, Number(m[2]), Number(m[3])]);
}

describe('confidence histogram', () => {
  it('bins confidences per stage; 1.0 and out-of-range values go to the end bins, NaN nowhere', () => {
    const h = emptyHistogram(
      [
        { name: 'little', threshold: 0.5 },
        { name: 'big', threshold: null },
      ],
      10,
    );
    for (const c of [0, 0.04, 0.55, 0.999, 1, 1.5, -0.2]) addConfidence(h, 'little', c);
    addConfidence(h, 'big', Number.NaN);
    addConfidence(h, 'big', 0.35);
    expect(h.stages[0]!.counts).toEqual([3, 0, 0, 0, 0, 1, 0, 0, 0, 3]);
    expect(h.stages[1]!.counts).toEqual([0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect(() => addConfidence(h, 'mid', 0.5)).toThrow('histogram has no stage "mid" (stages: little, big)');
    expect(() => emptyHistogram([], 0)).toThrow(/positive integer/);
  });

  it('draws one bar per non-empty bin, the threshold, and escapes names', () => {
    const h = emptyHistogram(
      [
        { name: 'a<b', threshold: 0.7 },
        { name: 'big', threshold: null },
      ],
      20,
    );
    addConfidence(h, 'a<b', 0.72);
    addConfidence(h, 'a<b', 0.73);
    addConfidence(h, 'big', 0.1);
    const svg = histogramSvg(h, 'title & more');
    expect(bars(svg)).toEqual([
      ['a&lt;b', 14, 2],
      ['big', 2, 1],
    ]);
    expect(svg).toContain('threshold 0.7');
    expect(svg).toContain('title &amp; more');
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(1);
  });

  it('rasterises to a PNG twice the SVG size at density 144', async () => {
    const svg = histogramSvg(emptyHistogram([{ name: 'little', threshold: 0.5 }]), 't', 400);
    const png = await svgToPng(svg);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const meta = await sharp(png).metadata();
    expect(meta.width).toBe(800);
    expect(meta.height).toBe(2 * Number(/height="(\d+)"/.exec(svg)![1]));
  });
});

const row = (pos: number, stage: string | null, confidence: number | null): PartRow => ({
  pos,
  key: `img${pos}.png`,
  label: stage ? 1 : null,
  labelName: stage ? 'one' : null,
  confidence,
  stage,
  top5: [],
  error: stage ? null : { kind: 'decode', message: 'bad' },
});
const stats = (o: Partial<ResultPart['stats']>): ResultPart['stats'] => ({
  images: 0,
  accepted: 0,
  forwarded: 0,
  errors: 0,
  fetchMs: 0,
  decodeMs: 0,
  inferMs: 0,
  jobMs: 0,
  ...o,
});

async function writeRun(root: string): Promise<LocalStore> {
  const store = new LocalStore(root);
  const little: ResultPart = {
    runId: 'p',
    batch: 0,
    stage: 0,
    stageName: 'little',
    rows: [row(0, 'little', 0.95), row(1, 'little', 0.91), row(4, null, null)],
    stats: stats({ images: 5, accepted: 2, forwarded: 2, errors: 1 }),
    forwardedConfidence: [0.33, 0.36],
  };
  const big: ResultPart = {
    runId: 'p',
    batch: 0,
    stage: 1,
    stageName: 'big',
    rows: [row(2, 'big', 0.42), row(3, 'big', 0.99)],
    stats: stats({ images: 2, accepted: 2 }),
  };
  await store.put(partKey(0, 0), JSON.stringify(little));
  await store.put(partKey(0, 1), JSON.stringify(big));
  return store;
}

const mergeInput = {
  runId: 'p',
  source: 'src',
  out: 'out',
  threshold: 0.9,
  metric: 'maxprob',
  stages: [
    { name: 'little', gmacsPerImage: 0.1, threshold: 0.9 },
    { name: 'big', gmacsPerImage: 1, threshold: null },
  ],
  batches: 1,
  batchSize: 4,
  startedAt: new Date(0),
};

/** The merge worker's steps up to the summary: merge, then draw the plots from what it gathered. */
async function mergeAndDraw(store: ObjectStore) {
  const { summary, plots } = await mergeRun(store, mergeInput, () => new Date(1000));
  expect(await drawRunPlots(store, plots)).toEqual(summary.plots);
  return summary;
}

describe('plots drawn after the merge', () => {
  it('writes confidence.svg and .png from the final rows of every stage and the images each forwarded', async () => {
    const root = join(dir, 'run-plain');
    const store = await writeRun(root);
    const summary = await mergeAndDraw(store);
    expect(summary.plots).toEqual({ confidenceSvg: 'confidence.svg', confidencePng: 'confidence.png' });
    const svg = await readFile(join(root, 'confidence.svg'), 'utf8');
    // 20 bins: 0.91 → 18, 0.95 → 19, 0.42 → 8, 0.99 → 19; the error row draws nothing.
    expect(bars(svg)).toEqual([
      ['little', 18, 1],
      ['little', 19, 1],
      ['big', 8, 1],
      ['big', 19, 1],
    ]);
    // The little stage's forwarded images (0.33, 0.36 → bin 6, 7) are drawn in grey below the threshold.
    expect(
      [...svg.matchAll(/class="forwarded" data-stage="([^"]*)" data-bin="(\d+)" data-count="(\d+)"/g)].map((m) => [m[1], Number(m[2]), Number(m[3])]),
    ).toEqual([
      ['little', 6, 1],
      ['little', 7, 1],
    ]);
    expect(svg).toContain('little (2 final answers, 2 forwarded in grey)');
    expect((await sharp(await readFile(join(root, 'confidence.png'))).metadata()).format).toBe('png');
  });

  it('draws the calibration curve with the promised and realised points when the run kept a calibration', async () => {
    // A calib.json as `cascade calibrate` writes it, and its curve file.
    const calib = calibFile({
      little: { name: 'l', path: '/m/l.onnx', gmacsPerImage: 0.1 },
      big: { name: 'b', path: '/m/b.onnx', gmacsPerImage: 1 },
      threshold: 0.9,
      expected: { gmacsPerImage: 0.4, fractionToBig: 0.3, agreement: 0.97 },
    });
    await writeFile(join(dir, 'calib.json'), JSON.stringify(calib));
    const curve = Array.from({ length: 1000 }, (_, i) => ({
      metric: i % 2 ? 'margin' : 'maxprob',
      threshold: i / 1000,
      fractionToBig: i / 1000,
      gmacsPerImage: 0.1 + i / 1000,
      saved: 0,
      accepted: 0,
      agreement: 1 - i / 5000,
      cascadeAccuracy: null,
    }));
    await writeFile(join(dir, 'calib.curve.json'), JSON.stringify(curve));
    const cal = (await readRunCalibration(join(dir, 'calib.json'), 100))!;
    // Only the chosen metric's 500 points, thinned to at most 100 (plus the last).
    expect(cal.points.length).toBeLessThanOrEqual(101);
    expect(cal.points.at(-1)).toEqual({ gmacsPerImage: 0.1 + 998 / 1000, agreement: 1 - 998 / 5000 });
    expect(cal.expected).toEqual({ gmacsPerImage: 0.4, agreement: 0.97, fractionToBig: 0.3 });

    const root = join(dir, 'run-calibrated');
    const store = await writeRun(root);
    await store.put(RUN_CALIBRATION_KEY, JSON.stringify(cal));
    const summary = await mergeAndDraw(store);
    expect(summary.plots?.calibrationSvg).toBe('calibration.svg');
    const svg = await readFile(join(root, 'calibration.svg'), 'utf8');
    expect(svg).toContain('promised (label-free, maxprob ≥ 0.900)');
    expect(svg).toContain('this run (compute; agreement unmeasured without audit)');
    expect(svg.match(/<circle/g)).toHaveLength(2);
  });

  it('refuses a calibration whose curve file is missing, naming it', async () => {
    const lonely = join(dir, 'lonely.json');
    const calib = calibFile({
      little: { name: 'l', path: '/m/l.onnx', gmacsPerImage: 0.1 },
      big: { name: 'b', path: '/m/b.onnx', gmacsPerImage: 1 },
      threshold: 0.9,
      curveJson: 'lonely.curve.json',
    });
    await writeFile(lonely, JSON.stringify(calib));
    await expect(readRunCalibration(lonely)).rejects.toThrow(/cannot read its curve .*lonely\.curve\.json/);
  });
});
