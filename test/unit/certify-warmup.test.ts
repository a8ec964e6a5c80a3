/**
 * Certification from the warm-up parts in a real local store: the sample is read from the first
 * and last stages' warm-up parts (a batch that forwarded nothing has no last part), certified,
 * and given its route: a refusal goes big-only, a cheap certified cascade stays a cascade.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certifyWarmup } from '../../pipeline/certify-warmup.js';
import type { PartRow, ResultPart } from '../../pipeline/results/manifest.js';
import { warmupPartKey } from '../../pipeline/results/output-layout.js';
import type { WarmupPart } from '../../pipeline/results/warmup-part.js';
import { decideThreshold, warmupSample } from '../../pipeline/self-calibration.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { stageStats } from '../helpers/stage-stats.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-certify-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bigRow = (pos: number, label: number): PartRow => ({
  pos,
  key: `img${pos}.png`,
  label,
  labelName: String(label),
  confidence: 0.99,
  stage: 'big',
  top5: [],
  error: null,
});

/** 200 warm-up images in batches of 50 (batch 4: every image failed to decode, nothing forwarded); little agrees with big above 0.3. */
async function writeWarmup(root: string): Promise<{ store: LocalStore; batches: number[] }> {
  const store = new LocalStore(root);
  const cost = { workerClass: 'cpu' as const, seconds: 1, decodeSeconds: 0.5, inferSeconds: 0.5, decoded: 50 };
  for (let b = 0; b < 4; b++) {
    const answers = Array.from({ length: 50 }, (_, pos) => {
      const confidence = (((b * 50 + pos) * 37) % 200) / 200;
      return { pos, label: confidence > 0.3 ? 7 : 8, confidence };
    });
    const first: WarmupPart = {
      runId: 'w',
      batch: b,
      stage: 0,
      stageName: 'little',
      rows: [],
      stats: stageStats({ images: 50, forwarded: 50 }),
      warmupAnswers: answers,
      cost,
    };
    const last: ResultPart = {
      runId: 'w',
      batch: b,
      stage: 1,
      stageName: 'big',
      rows: answers.map((a) => bigRow(a.pos, 7)),
      stats: stageStats({ images: 50, accepted: 50 }),
      cost: { ...cost, seconds: 10, inferSeconds: 9.5 },
    };
    await store.put(warmupPartKey(b, 0), JSON.stringify(first));
    await store.put(warmupPartKey(b, 1), JSON.stringify(last));
  }
  const failed: WarmupPart = {
    runId: 'w',
    batch: 4,
    stage: 0,
    stageName: 'little',
    rows: [{ ...bigRow(0, 0), label: null, labelName: null, confidence: null, stage: null, error: { kind: 'decode', message: 'bad' } }],
    stats: stageStats({ images: 1, errors: 1 }),
  };
  await store.put(warmupPartKey(4, 0), JSON.stringify(failed));
  return { store, batches: [0, 1, 2, 3, 4] };
}

const run = (targetAgreement: number) => ({
  metric: 'maxprob' as const,
  stages: [{ name: 'little' }, { name: 'big' }],
  selfCalibration: { targetAgreement, delta: 0.05 },
});

describe('certifyWarmup', () => {
  it('certifies on every image both stages answered, and keeps the cascade when it costs less than big alone', async () => {
    const { store, batches } = await writeWarmup(join(dir, 'certified'));
    const now = new Date('2026-12-01T00:00:00Z');
    const d = await certifyWarmup(store, batches, run(0.9), now);
    expect(d).toMatchObject({ certified: true, sample: 200, route: 'cascade', decidedAt: now.toISOString() });
    // The same certification as on the sample read by hand: 200 answers, agreeing above 0.3.
    const first = Array.from({ length: 4 }, (_, b) => ({
      batch: b,
      warmupAnswers: Array.from({ length: 50 }, (_, pos) => {
        const confidence = (((b * 50 + pos) * 37) % 200) / 200;
        return { pos, label: confidence > 0.3 ? 7 : 8, confidence };
      }),
    }));
    const last = first.map((p) => ({ batch: p.batch, rows: p.warmupAnswers.map((a) => ({ pos: a.pos, label: 7, error: null })) }));
    const { route: _r, routeReason: _why, expectedCost: _cost, ...certified } = d;
    expect(certified).toEqual(decideThreshold(warmupSample(first, last), 0.9, 0.05, now));
    expect(d.expectedCost!.cascadePerImage!).toBeLessThan(d.expectedCost!.bigOnlyPerImage!);
  });

  it('sends the rest of the run big-only when the warm-up cannot certify the target', async () => {
    const { store, batches } = await writeWarmup(join(dir, 'refused'));
    const d = await certifyWarmup(store, batches, run(0.999), new Date());
    expect(d).toMatchObject({ certified: false, sample: 200, route: 'big-only', routeReason: 'certification refused: the first stage would keep nothing' });
  });
});
