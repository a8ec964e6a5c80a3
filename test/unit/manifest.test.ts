import { describe, expect, it } from 'vitest';
import { mergeBatchRows, summarize, type PartRow, type ResultPart } from '../../pipeline/results/manifest.js';
import { partKey } from '../../pipeline/results/output-layout.js';
import { stageStats } from '../helpers/stage-stats.js';

const row = (pos: number, stage: string | null): PartRow => ({
  pos,
  key: `img${pos}.png`,
  label: stage ? 1 : null,
  labelName: stage ? 'one' : null,
  confidence: stage ? 0.9 : null,
  stage,
  top5: [],
  error: stage ? null : { kind: 'decode', message: 'bad' },
});
const part = (stage: number, rows: PartRow[], s: Partial<ResultPart['stats']>): ResultPart => ({
  runId: 'r',
  batch: 0,
  stage,
  stageName: stage ? 'big' : 'little',
  rows,
  stats: stageStats(s),
});

describe('mergeBatchRows', () => {
  it('interleaves stage rows back into input order', () => {
    const rows = mergeBatchRows([part(0, [row(0, 'little'), row(3, null)], {}), part(1, [row(2, 'big'), row(1, 'big')], {})], 4);
    expect(rows.map((r) => r.key)).toEqual(['img0.png', 'img1.png', 'img2.png', 'img3.png']);
    expect(rows.map((r) => r.stage)).toEqual(['little', 'big', 'big', null]);
    expect(rows[0]).not.toHaveProperty('pos');
  });
  it('refuses a lost image', () => {
    expect(() => mergeBatchRows([part(0, [row(0, 'little')], {})], 2)).toThrow(/1 of 2 images/);
  });
  it('refuses an image answered twice', () => {
    expect(() => mergeBatchRows([part(0, [row(0, 'little')], {}), part(1, [row(0, 'big')], {})], 1)).toThrow(/two stages/);
  });
});

describe('partKey', () => {
  it('sorts batches numerically as strings', () => {
    expect(partKey(2, 0) < partKey(10, 0)).toBe(true);
    expect(partKey(7, 1)).toBe('parts/00000007.stage1.json');
  });
});

describe('summarize', () => {
  it('accounts MACs over stages and routed fraction over decoded images', () => {
    const s = summarize({
      runId: 'r',
      source: 'src',
      out: 'out',
      threshold: 0.5,
      metric: 'maxprob',
      stages: [
        { name: 'little', gmacsPerImage: 0.1 },
        { name: 'big', gmacsPerImage: 2 },
      ],
      parts: [
        { stage: 0, stats: stageStats({ images: 10, accepted: 6, forwarded: 3, errors: 1, inferMs: 20 }) },
        { stage: 1, stats: stageStats({ images: 3, accepted: 3, inferMs: 30 }) },
      ],
      errorsByKind: { decode: 1 },
      images: 10,
      startedAt: new Date(0),
      finishedAt: new Date(2000),
    });
    expect(s.fractionToBig).toBeCloseTo(3 / 9);
    expect(s.macs.cascadeG).toBeCloseTo(9 * 0.1 + 3 * 2);
    expect(s.macs.bigOnlyG).toBeCloseTo(9 * 2);
    expect(s.macs.saved).toBeCloseTo(1 - 6.9 / 18);
    expect(s.labeled).toBe(9);
    expect(s.imagesPerSecond).toBeCloseTo(5);
    expect(s.stages[1]!.msPerImage.infer).toBeCloseTo(10);
  });
});
