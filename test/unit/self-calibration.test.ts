/**
 * Self-calibrating runs, pure parts: the warm-up sample is a fixed function of the run id and the
 * keys, spread over the whole listing; the flags refuse nonsense with one usage line (exit 2);
 * the warm-up parts give the certification its sample; the summary says what was decided.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { formatSelfCalibration } from '../../cli/format-summary.js';
import { parseSelfCalibration } from '../../cli/self-calibration-flags.js';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rankOf, rankReferenceOf } from '../../pipeline/routing.js';
import { WarmupPart } from '../../pipeline/results/warmup-part.js';
import {
  decideRank,
  decideThreshold,
  SelfCalibrationSummary,
  summaryDecision,
  ThresholdDecision,
  warmupReference,
  warmupSample,
} from '../../pipeline/self-calibration.js';
import { deriveRunId, runIdentity, specDifferences } from '../../producers/submit-run.js';
import type { RunSpec } from '../../queue/jobs.js';
import { DECIDED_AT_WARMUP } from '../../pipeline/routing-resolver.js';
import type { RunTracker } from '../../queue/run-tracker.js';
import { readRouting } from '../../queue/threshold-decision.js';
import { fakePin, RUN_DEFAULTS } from '../helpers/run-spec.js';
import { stageStats } from '../helpers/stage-stats.js';
import { chooseWarmup, defaultWarmupImages, inWarmup, parseWarmupSize, resolveWarmupImages } from '../../pipeline/warmup-sample.js';

const keys = Array.from({ length: 10_000 }, (_, i) => `s3://bucket/photos/${String(i).padStart(5, '0')}.jpg`);

describe('warm-up sample', () => {
  it('is exactly N keys, the same for the same run id, another for another run id', async () => {
    const a = await chooseWarmup(keys, 'run-a', { images: 400 }, 0.95);
    expect(a).toMatchObject({ total: 10_000, images: 400 });
    const picked = keys.filter((k) => inWarmup('run-a', k, a.cutoff));
    expect(picked).toHaveLength(400);
    // Listed in another order (a second listing, another machine): the same keys.
    const again = await chooseWarmup([...keys].reverse(), 'run-a', { images: 400 }, 0.95);
    expect(again.cutoff).toBe(a.cutoff);
    const b = await chooseWarmup(keys, 'run-b', { images: 400 }, 0.95);
    const pickedB = keys.filter((k) => inWarmup('run-b', k, b.cutoff));
    expect(pickedB).toHaveLength(400);
    expect(pickedB).not.toEqual(picked);
  });

  it('is spread over the whole listing, not its first N', async () => {
    const { cutoff } = await chooseWarmup(keys, 'run-a', { images: 400 }, 0.95);
    const positions = keys.flatMap((k, i) => (inWarmup('run-a', k, cutoff) ? [i] : []));
    // Each tenth of the listing holds about 40 (binomial sd ≈ 6); the first N alone would put all 400 in the first tenth.
    const perTenth = Array.from({ length: 10 }, (_, t) => positions.filter((p) => Math.floor(p / 1000) === t).length);
    for (const n of perTenth) {
      expect(n).toBeGreaterThan(15);
      expect(n).toBeLessThan(65);
    }
    expect(Math.min(...positions)).toBeLessThan(100);
    expect(Math.max(...positions)).toBeGreaterThan(9_900);
  });

  it('a percentage and the default resolve against the source; never more than the source', async () => {
    expect(resolveWarmupImages({ fraction: 0.05 }, 0.95, 10_000)).toBe(500);
    expect(resolveWarmupImages({ fraction: 0.05 }, 0.95, 717)).toBe(36);
    expect(resolveWarmupImages({ images: 900 }, 0.95, 717)).toBe(717);
    expect(defaultWarmupImages(0.95, 717)).toBe(400);
    expect(defaultWarmupImages(0.99, 717)).toBe(2000);
    expect(defaultWarmupImages(0.95, 1_000_000)).toBe(10_000);
    expect(resolveWarmupImages(undefined, 0.95, 717)).toBe(400);
    expect(resolveWarmupImages(undefined, 0.99, 717)).toBe(717);
    expect(await chooseWarmup([], 'r', undefined, 0.95)).toEqual({ total: 0, images: 0, cutoff: -1 });
  });

  it('--warmup takes N or p%, and names what is wrong with anything else', () => {
    expect(parseWarmupSize('400')).toEqual({ size: { images: 400 } });
    expect(parseWarmupSize('12.5%')).toEqual({ size: { fraction: 0.125 } });
    expect(parseWarmupSize('100%')).toEqual({ size: { fraction: 1 } });
    for (const bad of ['0', '-5', '1.5', 'abc', '', '0%', '101%', '5%%', '1e3']) expect(parseWarmupSize(bad), bad).toHaveProperty('error');
  });
});

describe('self-calibration flags', () => {
  it('checked values, δ defaulting to 0.05', () => {
    expect(parseSelfCalibration({})).toBeUndefined();
    expect(parseSelfCalibration({ targetAgreement: '0.95' })).toEqual({ targetAgreement: 0.95, delta: 0.05 });
    expect(parseSelfCalibration({ targetAgreement: '0.99', delta: '0.1', warmup: '5%' })).toEqual({
      targetAgreement: 0.99,
      delta: 0.1,
      warmup: { fraction: 0.05 },
    });
  });

  it('nonsense and conflicting flags are usage errors', () => {
    const cases: Array<[Parameters<typeof parseSelfCalibration>[0], RegExp]> = [
      [{ targetAgreement: '1.5' }, /--target-agreement 1.5: expected a fraction between 0 and 1/],
      [{ targetAgreement: '1' }, /--target-agreement 1: /],
      [{ targetAgreement: 'high' }, /--target-agreement high: /],
      [{ targetAgreement: '0.95', delta: '0' }, /--delta 0: /],
      [{ targetAgreement: '0.95', warmup: '0' }, /--warmup 0: expected a number of images/],
      [{ targetAgreement: '0.95', threshold: 0.5 }, /drop --threshold/],
      [{ targetAgreement: '0.95', calibration: 'calib.json' }, /drop --calibration/],
      [{ warmup: '400' }, /--delta and --warmup go with --target-agreement/],
    ];
    for (const [flags, message] of cases) {
      const call = () => parseSelfCalibration(flags);
      expect(call).toThrow(ConfigError);
      expect(call).toThrow(message);
    }
  });

  describe('on the command line', () => {
    afterEach(() => {
      vi.restoreAllMocks();
      process.exitCode = undefined;
    });
    it('cascade run --warmup 0 exits 2 with one line, before anything starts', async () => {
      const err: string[] = [];
      vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
        err.push(String(chunk));
        return true;
      });
      await main(['node', 'cascade', 'run', 'nowhere', '--out', 'nowhere-out', '--target-agreement', '0.95', '--warmup', '0']);
      expect(process.exitCode).toBe(2);
      expect(err.join('')).toBe('cascade: --warmup 0: expected a number of images (e.g. 400) or a percentage of the source (e.g. 5%)\n');
    });
  });
});

describe('the warm-up sample the certification sees', () => {
  it('pairs the first stage answer with the last stage row of the same image; error rows have no answer', () => {
    const first = [
      {
        batch: 0,
        warmupAnswers: [
          { pos: 0, label: 1, confidence: 0.9 },
          { pos: 2, label: 3, confidence: 0.4 },
          { pos: 3, label: 2, confidence: 0.7 },
        ],
      },
      { batch: 1, warmupAnswers: [{ pos: 0, label: 1, confidence: 0.8 }] },
    ];
    const last = [
      {
        batch: 0,
        rows: [
          { pos: 0, label: 1, error: null },
          { pos: 2, label: 0, error: null },
          { pos: 3, label: null, error: { kind: 'decode' } },
        ],
      },
      { batch: 1, rows: [{ pos: 0, label: 2, error: null }] },
    ];
    expect(warmupSample(first, last)).toEqual([
      { confidence: 0.9, agrees: true },
      { confidence: 0.4, agrees: false },
      { confidence: 0.8, agrees: false },
    ]);
  });

  it('the summary lines state the decision, or the refusal loudly', () => {
    const now = new Date('2026-11-30T12:00:00Z');
    const agreeing = Array.from({ length: 200 }, (_, i) => ({ confidence: 0.5 + i / 400, agrees: true }));
    const certified = decideThreshold(agreeing, 0.95, 0.05, now);
    expect(certified.certified).toBe(true);
    const lines = formatSelfCalibration({ targetAgreement: 0.95, delta: 0.05, warmupImages: 200, warmupGmacs: 50, decision: certified }, 500);
    expect(lines[0]).toBe('  self-calibration: target 95.0% agreement at δ 0.05; warm-up 200 images (50.0 GMACs, 10.0% of big-only, counted above)');
    expect(lines[1]).toMatch(/^ {4}threshold 0\.\d+: with probability ≥ 0\.95, agreement on kept images ≥ \d+\.\d%/);
    const refused = decideThreshold(agreeing.slice(0, 10), 0.99, 0.05, now);
    expect(refused.certified).toBe(false);
    const no = formatSelfCalibration({ targetAgreement: 0.99, delta: 0.05, warmupImages: 10, warmupGmacs: 5, decision: refused }, 50);
    expect(no[1]).toMatch(/^ {4}REFUSED, every image went to the last stage: /);
  });
});

describe('a self-calibrating rank run', () => {
  // 400 warm-up images: the little model agrees with the big one exactly when its margin is above 0.3,
  // and its pnorm follows its margin, so rank orders the images as margin does.
  const n = 400;
  const answers = Array.from({ length: n }, (_, i) => {
    const margin = ((i * 7919) % n) / n;
    return { pos: i % 32, batch: Math.floor(i / 32), label: margin > 0.3 ? 1 : 2, confidence: 0.5, margin, pnorm: 0.2 + margin / 2 };
  });
  const first = Array.from({ length: Math.ceil(n / 32) }, (_, b) => ({
    batch: b,
    warmupAnswers: answers.filter((a) => a.batch === b).map(({ batch: _, ...a }) => a),
  }));
  const last = first.map((p) => ({ batch: p.batch, rows: p.warmupAnswers.map((a) => ({ pos: a.pos, label: 1, error: null })) }));
  const now = new Date('2026-11-30T12:00:00Z');

  it('builds its reference from the warm-up answers, ranks each against it, certifies at the full δ and stores the reference', () => {
    const reference = warmupReference(first)!;
    expect(reference).toEqual(rankReferenceOf({ margin: answers.map((a) => a.margin), pnorm: answers.map((a) => a.pnorm) }));
    const sample = warmupSample(first, last, reference);
    expect(sample).toHaveLength(n);
    expect(sample.map((s) => s.confidence)).toEqual(first.flatMap((p) => p.warmupAnswers.map((a) => rankOf(a.margin, a.pnorm, reference))));
    const d = decideThreshold(sample, 0.95, 0.05, now, reference);
    expect(d).toMatchObject({ certified: true, metric: 'rank', rankReference: reference, delta: 0.05 });
    if (!d.certified) return;
    // The threshold keeps exactly the warm-up images whose rank reaches it, and they agree as promised.
    const kept = sample.filter((s) => s.confidence >= d.threshold);
    expect(kept.length).toBe(d.accepted);
    expect(kept.filter((s) => s.agrees).length / kept.length).toBeGreaterThanOrEqual(0.95);
    // The stored form round-trips, reference included.
    expect(ThresholdDecision.parse(JSON.parse(JSON.stringify(d)))).toEqual(d);
  });

  it('without the reference the sample is scored by the stored confidence, as for other metrics', () => {
    expect(warmupSample(first, last).every((s) => s.confidence === 0.5)).toBe(true);
    expect(decideThreshold(warmupSample(first, last), 0.95, 0.05, now)).not.toHaveProperty('rankReference');
  });

  it('refuses loudly to rank answers of an older worker, which recorded no margin or pnorm', () => {
    const old = [{ batch: 0, warmupAnswers: [{ pos: 0, label: 1, confidence: 0.9 }] }];
    expect(() => warmupReference(old)).toThrow(/has no margin: it was written by a worker that cannot self-calibrate rank/);
    expect(warmupReference([{ batch: 0, warmupAnswers: [] }])).toBeUndefined();
  });

  it('decisions and warm-up parts stored before rank still parse', () => {
    const decision = {
      certified: true,
      target: 0.95,
      delta: 0.05,
      threshold: 0.9,
      bound: 0.951,
      accepted: 120,
      sample: 400,
      empiricalAgreement: 0.99,
      fractionAccepted: 0.3,
      decidedAt: now.toISOString(),
    };
    expect(ThresholdDecision.parse(decision)).toEqual(decision);
    const part = {
      runId: 'r',
      batch: 0,
      stage: 0,
      stageName: 'little',
      rows: [],
      stats: stageStats({ images: 1, forwarded: 1 }),
      warmupAnswers: [{ pos: 0, label: 3, confidence: 0.8 }],
    };
    expect(WarmupPart.parse(part).warmupAnswers).toEqual([{ pos: 0, label: 3, confidence: 0.8 }]);
  });

  it('workers rank against the decision, refuse a rank decision without reference, and score a warm-up with no answers by margin', async () => {
    const reference = warmupReference(first)!;
    const spec = {
      runId: 'r',
      source: '/in',
      out: '/out',
      metric: 'rank' as const,
      batchSize: 4,
      stages: [
        { name: 'little', model: fakePin('little.onnx'), gmacsPerImage: 1, threshold: DECIDED_AT_WARMUP },
        { name: 'big', model: fakePin('big.onnx'), gmacsPerImage: 2, threshold: null },
      ],
      ...RUN_DEFAULTS,
      selfCalibration: { targetAgreement: 0.95, delta: 0.05 },
      createdAt: now.toISOString(),
    } satisfies RunSpec;
    const tracker = (d: ThresholdDecision | null) => ({ decision: async () => (d ? JSON.stringify(d) : null) }) as unknown as RunTracker;
    const decided = decideRank(first, last, 0.95, 0.05, now);
    // What the audit job scores with: the last stage's routing.
    const scoring = async (d: ThresholdDecision | null, s: RunSpec = spec) => {
      const { metric, rankReference } = await readRouting(tracker(d), s, 1);
      return { metric, rankReference };
    };
    expect(await scoring(decided)).toEqual({ metric: 'rank', rankReference: reference });
    await expect(scoring(null)).rejects.toThrow(/not decided yet/);
    // A decision stored before rank could be self-calibrated has no reference: refused, never routed without one.
    const { rankReference: _, metric: _m, ...old } = decided;
    await expect(scoring(old)).rejects.toThrow(/has no rank reference \(stored by an older version\); refusing to route without it/);
    // A warm-up whose little answers all failed: refused, no reference, every image to big scored by margin.
    const empty = decideRank([{ batch: 0, warmupAnswers: [] }], [], 0.95, 0.05, now);
    expect(empty).toMatchObject({ certified: false, metric: 'rank', sample: 0 });
    expect(empty).not.toHaveProperty('rankReference');
    expect(await scoring(empty)).toEqual({ metric: 'margin', rankReference: undefined });
    // Other metrics and calib-file rank runs never read the decision.
    expect(await scoring(null, { ...spec, metric: 'maxprob' })).toEqual({ metric: 'maxprob', rankReference: undefined });
  });

  it('summary.json records the reference by its size; the printed lines never show it', () => {
    const reference = warmupReference(first)!;
    const d = decideThreshold(warmupSample(first, last, reference), 0.95, 0.05, now, reference);
    const summarised = summaryDecision(d);
    expect(summarised).not.toHaveProperty('rankReference');
    expect(summarised).toMatchObject({ metric: 'rank', rankReferenceSize: n });
    const summary = SelfCalibrationSummary.parse({ targetAgreement: 0.95, delta: 0.05, warmupImages: n, warmupGmacs: 1, decision: summarised });
    expect(JSON.stringify(summary)).not.toContain('rankReference"');
    const lines = formatSelfCalibration(summary, 10).join('\n');
    expect(lines).toMatch(/threshold 0\.\d+ \(rank against the warm-up\)/);
    expect(lines.length).toBeLessThan(400);
  });
});

describe('the metric of a self-calibrating run', () => {
  const models = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-selfcal-'));
    await writeFile(join(dir, 'c.yaml'), 'little: { path: little.onnx }\nbig: { path: big.onnx }\n');
    await writeFile(join(dir, 'm.yaml'), 'little: { path: little.onnx }\nbig: { path: big.onnx }\nmetric: margin\n');
    return dir;
  };
  it('is rank unless the config file or --metric names one; other runs keep maxprob', async () => {
    const dir = await models();
    const load = (file: string, selfCalibrating: boolean, metric?: string) =>
      loadConfig({ file: join(dir, file), env: {}, cwd: dir, selfCalibrating, overrides: { metric } }).then((c) => [c.metric, c.rankReference]);
    expect(await load('c.yaml', true)).toEqual(['rank', undefined]);
    expect(await load('c.yaml', true, 'maxprob')).toEqual(['maxprob', undefined]);
    expect(await load('m.yaml', true)).toEqual(['margin', undefined]);
    expect(await load('c.yaml', false)).toEqual(['maxprob', undefined]);
    // Without --target-agreement rank still needs a calib.json.
    await expect(load('c.yaml', false, 'rank')).rejects.toThrow(/metric rank comes from `cascade calibrate`/);
  });
});

describe('run identity', () => {
  it('target, δ and warm-up size are part of it: another of any is another run', () => {
    const spec = (selfCalibration: RunSpec['selfCalibration']): RunSpec => ({
      runId: 'r',
      source: '/images',
      out: '/out',
      metric: 'maxprob',
      batchSize: 32,
      ...RUN_DEFAULTS,
      stages: [
        { name: 'little', model: fakePin('little.onnx'), gmacsPerImage: 0.3, threshold: DECIDED_AT_WARMUP },
        { name: 'big', model: fakePin('big.onnx'), gmacsPerImage: 1.6, threshold: null },
      ],
      selfCalibration,
      createdAt: '2026-11-30T00:00:00Z',
    });
    const base = spec({ targetAgreement: 0.95, delta: 0.05 });
    const others = [
      spec({ targetAgreement: 0.96, delta: 0.05 }),
      spec({ targetAgreement: 0.95, delta: 0.1 }),
      spec({ targetAgreement: 0.95, delta: 0.05, warmup: { images: 400 } }),
      spec({ targetAgreement: 0.95, delta: 0.05, warmup: { fraction: 0.05 } }),
    ];
    const id = (s: RunSpec) => deriveRunId(runIdentity(s));
    expect(new Set([base, ...others].map(id)).size).toBe(5);
    expect(id(spec({ targetAgreement: 0.95, delta: 0.05 }))).toBe(id(base));
    expect(specDifferences(base, others[0]!)).toEqual(['selfCalibration.targetAgreement: 0.95 → 0.96']);
  });
});
