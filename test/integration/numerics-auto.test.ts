/**
 * numerics 'auto' and the probe cache on generated models (real onnxruntime sessions, real files).
 * Under 'auto' a worker labels with native kernels when their probe matches the run's exact
 * reference, else with exact ones; a probe kept in the cache lets the next process plan a run
 * without opening the model. The fallback is driven by a native probe seeded in the cache as a
 * CPU without VNNI gives it: this host's native kernels agree with exact ones, so only emulation
 * shows the real thing (test/real/cpu-emulation.test.ts).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelSpec } from '../../config/schema.js';
import { ModelCache, ModelRefusedError } from '../../pipeline/models/model-cache.js';
import { planModel } from '../../pipeline/models/plan-model.js';
import type { Probe } from '../../pipeline/models/probe.js';
import { ProbeCache } from '../../pipeline/models/probe-cache.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import { withModels, withTempDir } from '../helpers/fixtures.js';
import { LOCAL_ONLY } from '../helpers/run-spec.js';

const work = withTempDir('numerics-auto');
const models = withModels(work);

const modelCache = (probeDir?: string) =>
  new ModelCache({
    runtime: { executionProviders: ['cpu'], threads: 1, intraOpThreads: 1 },
    capacity: 4,
    read: (ref) => fetchRef(ref, LOCAL_ONLY),
    probeCache: probeDir ? new ProbeCache(probeDir) : null,
  });

const spec = () => ModelSpec.parse({ path: models.colourLittle, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1] } });

/** `probe` with every recorded probability moved by `by`: numbers a saturating CPU could give. */
function shifted(probe: Probe, by: number): Probe {
  return { ...probe, outputs: probe.outputs.map((o) => ({ ...o, top: o.top.map(([c, p]) => [c, Math.min(1, p + by)] as [number, number]) })) };
}

describe("numerics 'auto' and the probe cache", () => {
  it('plans with exact numerics and keeps the probe, so a second planner neither opens the model nor probes it', async () => {
    const dir = join(work.path, 'probes-plan');
    const first = modelCache(dir);
    const a = await planModel('little', spec(), 'auto', first);
    expect(first.size).toBe(1);
    await first.close();
    const files = await readdir(dir);
    expect(files).toHaveLength(1);
    const entry = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as { identity: { numerics: string; provider: string } };
    expect(entry.identity).toMatchObject({ numerics: 'exact', provider: 'cpu' });

    const second = modelCache(dir);
    const b = await planModel('little', spec(), 'auto', second);
    expect(b.pin.probe).toEqual(a.pin.probe);
    expect(second.size).toBe(0);
    // 'native' is another entry: its numbers may differ from exact ones.
    await planModel('little', spec(), 'native', second);
    expect(second.size).toBe(1);
    expect(await readdir(dir)).toHaveLength(2);
    await second.close();
  });

  it('ignores a damaged cache entry and probes again', async () => {
    const dir = join(work.path, 'probes-damaged');
    const first = modelCache(dir);
    const a = await planModel('little', spec(), 'exact', first);
    await first.close();
    const [file] = await readdir(dir);
    await writeFile(join(dir, file!), '{"version":1,"probe":');
    const second = modelCache(dir);
    const b = await planModel('little', spec(), 'exact', second);
    expect(b.pin.probe).toEqual(a.pin.probe);
    expect(second.size).toBe(1);
    await second.close();
    expect(JSON.parse(await readFile(join(dir, file!), 'utf8'))).toMatchObject({ version: 1, probe: a.pin.probe });
  });

  it('labels with native kernels where their probe matches the exact reference, closing the idle exact session planning opened', async () => {
    // One cache plans and labels, as in `cascade run`.
    const worker = modelCache();
    const { pin } = await planModel('little', spec(), 'auto', worker);
    expect(worker.size).toBe(1);
    const lease = await worker.acquire('little', pin, 'auto', 0.002, 'run-auto');
    try {
      expect(lease.numerics).toBe('native');
      expect(lease.probe.ok).toBe(true);
      expect(worker.size).toBe(1);
    } finally {
      lease.release();
      await worker.close();
    }
  });

  it('falls back to exact kernels where the native probe differs, without opening the native session when the cache says so', async () => {
    const dir = join(work.path, 'probes-fallback');
    const planner = modelCache(dir);
    const { pin } = await planModel('little', spec(), 'auto', planner);
    // The native probe as a CPU whose int8 kernels saturate would record it.
    const native = await planModel('little', spec(), 'native', planner);
    await planner.close();
    const cache = new ProbeCache(dir);
    const identity = { sha256: pin.sha256, output: pin.output, graphOptimization: pin.graphOptimization, preprocess: pin.preprocess, provider: 'cpu' };
    const worker = modelCache(dir);
    await cache.put({ ...identity, numerics: 'native', platform: worker.platform }, shifted(native.pin.probe, 0.1));

    const lease = await worker.acquire('little', pin, 'auto', 0.002, 'run-fallback');
    try {
      expect(lease.numerics).toBe('exact');
      expect(lease.probe).toEqual({ maxDiff: 0, top1Changed: [], ok: true });
      // Only the exact session was opened.
      expect(worker.size).toBe(1);
    } finally {
      lease.release();
    }
    // The choice holds for the run's next batches.
    const again = await worker.acquire('little', pin, 'auto', 0.002, 'run-fallback');
    expect(again.numerics).toBe('exact');
    again.release();
    await worker.close();
  });

  it('refuses the model when neither native nor exact kernels match the reference', async () => {
    const planner = modelCache();
    const { pin } = await planModel('little', spec(), 'auto', planner);
    await planner.close();
    const worker = modelCache();
    const elsewhere = { ...pin, probe: shifted(pin.probe, 0.05) };
    const refused = await worker.acquire('little', elsewhere, 'auto', 0.002, 'run-refused').catch((err: Error) => err);
    expect(refused).toBeInstanceOf(ModelRefusedError);
    expect((refused as Error).message).toMatch(/for run run-refused: .*numerics exact \(numerics auto: native kernels differed here too\)/);
    // The native session that did not match is closed, not kept for nothing.
    expect(worker.size).toBe(1);
    await worker.close();
  });
});
