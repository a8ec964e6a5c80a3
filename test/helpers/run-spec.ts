/**
 * Run specs for tests: pins of real generated models (for tests that run workers), and
 * stand-in pins for tests that only store and read specs (tracker, status, schedules).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelSpec, PreprocessSpec, type ModelSpecInput } from '../../config/schema.js';
import { ModelCache } from '../../pipeline/models/model-cache.js';
import { type ModelPin, sha256Hex } from '../../pipeline/models/model-pin.js';
import { planModel } from '../../pipeline/models/plan-model.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import { Stores } from '../../pipeline/storage/stores.js';
import type { RunSpec } from '../../queue/jobs.js';

/** The run-wide settings a config gives by default. */
export const RUN_DEFAULTS: Pick<RunSpec, 'numerics' | 'limits' | 'probeTolerance'> = {
  numerics: 'exact',
  limits: { maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 },
  probeTolerance: 0.002,
};

/** A pin for a model no test opens: its hash is of the path, its probe a placeholder. */
export function fakePin(path: string): ModelPin {
  return {
    name: path,
    path,
    sha256: sha256Hex(Buffer.from(path)),
    labels: null,
    preprocess: PreprocessSpec.parse({}),
    output: 'auto',
    graphOptimization: 'all',
    maxBatch: 32,
    probe: { outputs: [{ image: 'gradient', top: [[0, 1]] }], provider: 'cpu', platform: { arch: 'x64', cpuFlags: [], onnxruntime: '0' } },
  };
}

/** Stores with no remote rows: tests have no S3 unless they start s3rver, and a remote ref fails at once. */
export const LOCAL_ONLY = new Stores({}, { schemes: [] });

/** A model cache reading local files only, as a test worker or planner uses. */
export function testModelCache(capacity = 4): ModelCache {
  return new ModelCache({
    runtime: { executionProviders: ['cpu'], threads: 1, intraOpThreads: 1 },
    capacity,
    read: (ref) => fetchRef(ref, LOCAL_ONLY),
    downloadDir: join(tmpdir(), 'cascade-test-models'),
  });
}

/** A real pin (hash, GMACs, probe) of a generated model, for tests that run workers on it. */
export async function pinTestModel(stage: string, spec: ModelSpecInput, cache: ModelCache): Promise<{ model: ModelPin; gmacsPerImage: number }> {
  const { pin, gmacsPerImage } = await planModel(stage, ModelSpec.parse(spec), 'exact', cache);
  return { model: pin, gmacsPerImage };
}

/** A stage worker's image reader for local files (tests have no S3 unless they start s3rver). */
export function localFetch(ref: string, maxBytes: number): Promise<Buffer> {
  return fetchRef(ref, LOCAL_ONLY, { maxBytes });
}

/** The stages of a stand-in little/big run: fakePin models under `dir`, the little one accepting at 0.5. */
export function fakeStages(o: { dir?: string; bigGmacs?: number } = {}): RunSpec['stages'] {
  const dir = o.dir ?? '';
  return [
    { name: 'little', model: fakePin(`${dir}l.onnx`), gmacsPerImage: 0.1, threshold: 0.5 },
    { name: 'big', model: fakePin(`${dir}b.onnx`), gmacsPerImage: o.bigGmacs ?? 1, threshold: null },
  ];
}

/** A little/big run spec of stand-in pins, for tests that only store and read specs; `o` overrides any field. */
export function fakeRunSpec(runId: string, o: Partial<RunSpec> = {}): RunSpec {
  return {
    runId,
    source: '/in',
    out: '/out',
    metric: 'maxprob',
    batchSize: 4,
    ...RUN_DEFAULTS,
    stages: fakeStages(),
    createdAt: new Date(0).toISOString(),
    ...o,
  };
}

/** The run the status tests show: s3:// in and out, batches of 10, a 4-GMAC big stage, created 2026-01-01. */
export function statusRunSpec(runId: string): RunSpec {
  return fakeRunSpec(runId, {
    source: 's3://in/x/',
    out: 's3://out/x/',
    batchSize: 10,
    stages: fakeStages({ dir: '/m/', bigGmacs: 4 }),
    createdAt: '2026-01-01T00:00:00.000Z',
  });
}
