/**
 * Batch accumulation for models with a dynamic batch dimension: concurrent small requests
 * become one inference call and every caller still gets exactly its own rows. Real
 * onnxruntime sessions on the generated colour models (outputs known exactly); the same in a
 * whole run: integration/batch-accumulation-run.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { defaultIntraOpThreads } from '../../workers/cascade-runtime.js';
import { expectedBigProbs, writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;

const POOL = { executionProviders: ['cpu'] as const, intraOpThreads: 1, threads: 1, output: 'probabilities' as const, graphOptimization: 'all' as const };

/** n 8×8 images of uniform colour (r, g, b in [0, 1]), stacked CHW. */
function uniform(colours: Array<[number, number, number]>): Float32Array {
  const out = new Float32Array(colours.length * 3 * 64);
  colours.forEach((rgb, i) => rgb.forEach((v, c) => out.fill(v, (i * 3 + c) * 64, (i * 3 + c + 1) * 64)));
  return out;
}

function expectRows(probs: Float32Array, colours: Array<[number, number, number]>) {
  expect(probs.length).toBe(colours.length * 4);
  colours.forEach(([r, g, b], i) => {
    const want = expectedBigProbs(r, g, b);
    for (let k = 0; k < 4; k++) expect(probs[i * 4 + k]).toBeCloseTo(want[k]!, 5);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-accumulate-'));
  models = await writeTestModels(join(dir, 'models'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('batch accumulator in the inference pool', () => {
  it('stacks concurrent requests into one call; each caller gets its own exact rows', async () => {
    // A wait far beyond the test's run time: the batch goes out only because it is full.
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8, accumulateMs: 60_000 });
    try {
      const requests: Array<Array<[number, number, number]>> = [
        [
          [1, 0, 0],
          [0, 1, 0],
        ],
        [
          [0, 0, 1],
          [0.5, 0.5, 0.5],
        ],
        [
          [0.2, 0.4, 0.6],
          [0, 0, 0],
        ],
        [
          [1, 1, 1],
          [0.9, 0.1, 0.3],
        ],
      ];
      const results = await Promise.all(requests.map((colours) => pool.infer(uniform(colours), colours.length)));
      expect(pool.accumulator!.calls).toEqual([8]);
      results.forEach((r, i) => expectRows(r.probs, requests[i]!));
      // The thread's CPU for the call is split like its rows: four requests of two, four equal shares (Linux, where it is read).
      // A call this small may end before the kernel updates the thread's run time (ticks, context
      // switches), so its reading may be 0; cost-meter-threads.test.ts checks real amounts on a slow model.
      if (process.platform === 'linux') {
        const cpu = results.map((r) => r.cpuSeconds!);
        expect(cpu[0]).toBeGreaterThanOrEqual(0);
        for (const c of cpu) expect(c).toBeCloseTo(cpu[0]!, 12);
      }
    } finally {
      await pool.close();
    }
  });

  it('sends the gathered batch first when a request would overflow it, and a partial batch after the wait', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8, accumulateMs: 5 });
    try {
      const requests: Array<Array<[number, number, number]>> = [
        [
          [1, 0, 0],
          [0, 1, 0],
          [0, 0, 1],
        ],
        [
          [0.3, 0.3, 0.3],
          [0.7, 0.2, 0.1],
          [0, 0.5, 1],
        ],
        [
          [0.1, 0.9, 0.1],
          [1, 0, 1],
          [0.25, 0.5, 0.75],
        ],
      ];
      const results = await Promise.all(requests.map((colours) => pool.infer(uniform(colours), colours.length)));
      expect(pool.accumulator!.calls).toEqual([6, 3]);
      results.forEach((r, i) => expectRows(r.probs, requests[i]!));
    } finally {
      await pool.close();
    }
  });

  it('a failing call fails every request stacked into it', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 4, accumulateMs: 60_000 });
    try {
      const good = pool.infer(
        uniform([
          [1, 0, 0],
          [0, 1, 0],
        ]),
        2,
      );
      // Claims two images but holds one: the stacked batch no longer matches its count.
      const bad = pool.infer(uniform([[0, 0, 1]]), 2);
      await expect(good).rejects.toThrow(/expected 4×192/);
      await expect(bad).rejects.toThrow(/expected 4×192/);
    } finally {
      await pool.close();
    }
  });

  it('is off by default on the CPU provider, where it measured slower', async () => {
    const pool = await InferencePool.open(models.colourBig, { ...POOL, maxBatch: 8 });
    try {
      expect(pool.provider).toBe('cpu');
      expect(pool.accumulator).toBeNull();
    } finally {
      await pool.close();
    }
  });

  it('is off for a model with a fixed batch size', async () => {
    const pool = await InferencePool.open(models.colourLittle, { ...POOL, output: 'logits', maxBatch: 8, accumulateMs: 20 });
    try {
      expect(pool.accumulator).toBeNull();
    } finally {
      await pool.close();
    }
  });
});

describe('default thread sizing', () => {
  it('shares the cores among the stages a process serves', () => {
    expect(defaultIntraOpThreads(2, 2)).toBe(1);
    expect(defaultIntraOpThreads(1, 2)).toBe(2);
    expect(defaultIntraOpThreads(2, 16)).toBe(8);
    expect(defaultIntraOpThreads(3, 2)).toBe(1);
  });
});
