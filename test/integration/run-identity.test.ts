/**
 * Run identity and output ownership (issue 12, items 1–2) against a real redis-server and
 * s3rver: a run id names one spec, an output location holds one run, and the merge reads only
 * its own run's parts. Each case ends with exact row counts (verifyManifest) or the refusal.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import type { CascadeConfig } from '../../config/schema.js';
import { ResultPart } from '../../pipeline/results/manifest.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { listSource } from '../../producers/list-source.js';
import { planRun } from '../../producers/plan-run.js';
import { RUN_MARKER_KEY } from '../../pipeline/results/output-layout.js';
import { OutputClaimedError, RunConflictError, specDifferences, submitRun } from '../../producers/submit-run.js';
import { mergeJobId } from '../../queue/jobs.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { type Runtime, startRuntime } from '../../workers/cascade-runtime.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec, writeAlternatingImages } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';

let images: string;
const N = 6;

/** The refs of a folder or key list, listed as runs list them. */
const refsOf = (source: string) => listSource(source, { extensions: ['.png'] });

const modelSpec = (path: string) => colourSpec(path, models.labels);

async function cascadeConfig(prefix: string, threshold = 0.9): Promise<CascadeConfig> {
  return loadConfig({
    overrides: {
      little: modelSpec(models.colourLittle),
      big: modelSpec(models.colourBig),
      threshold,
      batchSize: 2,
      redisUrl: redis.url,
      prefix,
      s3: { endpoint: s3.endpoint, forcePathStyle: true },
    },
    env: {},
  });
}

/** A runtime with every role, torn down after `fn`. */
async function withRuntime<T>(config: CascadeConfig, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await startRuntime(config, redis.url, ['little', 'big', 'merge'], () => {});
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

/** Plan and submit a run of `images` into `out`, wait for it, and check its rows exactly. */
async function runTo(rt: Runtime, config: CascadeConfig, out: string, runId: string, overwrite = false) {
  const spec = await planRun(config, images, out, rt.models, runId);
  const result = await submitRun({
    spec,
    refs: listSource(spec.source, { extensions: config.extensions }),
    tracker: rt.tracker,
    queues: rt.queues,
    output: rt.openOutput(spec.out),
    overwrite,
  });
  const summary = await waitForRun(rt.tracker, runId, () => {});
  const report = await verifyManifest(listSource(spec.source, { extensions: config.extensions }), readManifestLines(out, s3.stores));
  return { spec, result, summary, report };
}

// The runtime's S3 client takes credentials from the SDK's default chain: s3rver's.
withS3rverCredentials();
const work = withTempDir('identity');
const redis = withRedis();
const s3 = withS3({ buckets: ['shared'] });
const models = withModels(work);

beforeAll(async () => {
  images = join(work.path, 'images');
  await writeAlternatingImages(images, N);
});

describe('a run id names one spec', () => {
  it('the same spec again is idempotent; another spec under the id is refused with its differences', async () => {
    const prefix = uniquePrefix('id');
    const config = await cascadeConfig(prefix);
    await withRuntime(config, async (rt) => {
      const out = join(work.path, 'out-id');
      const first = await runTo(rt, config, out, 'same-id');
      expect(first.result.alreadySubmitted).toBe(false);
      expect(first.report.ok).toBe(true);
      expect(first.report.manifestRows).toBe(N);
      const again = await submitRun({
        spec: await planRun(config, images, out, rt.models, 'same-id'),
        refs: refsOf(images),
        tracker: rt.tracker,
        queues: rt.queues,
        output: rt.openOutput(out),
      });
      expect(again).toMatchObject({ alreadySubmitted: true, images: N, batches: N / 2 });

      const other = await planRun(await cascadeConfig(prefix, 0.5), images, join(work.path, 'out-elsewhere'), rt.models, 'same-id');
      const err = await submitRun({ spec: other, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(other.out) }).catch(
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(RunConflictError);
      expect(err).toBeInstanceOf(ConfigError); // exit 2 from the CLI
      expect((err as Error).message).toBe(
        `run same-id already exists with another spec; submit with another --run-id (or none, to derive one):\n  out: "${out}" → "${join(work.path, 'out-elsewhere')}"\n  stages.0.threshold: 0.9 → 0.5`,
      );
      // Nothing of the refused spec reached Redis or the other location.
      expect((await rt.tracker.spec('same-id'))!.out).toBe(out);
      await expect(readdir(join(work.path, 'out-elsewhere'))).rejects.toThrow(/ENOENT/);
    });
  });

  it('an interrupted listing resumes with the same spec and is refused with another', async () => {
    const prefix = uniquePrefix('resume');
    const config = await cascadeConfig(prefix);
    await withRuntime(config, async (rt) => {
      const out = join(work.path, 'out-resume');
      const spec = await planRun(config, images, out, rt.models, 'resume-1');
      // The listing dies after three refs (as when Redis hit maxmemory mid-listing).
      async function* dying() {
        let n = 0;
        for await (const ref of refsOf(images)) {
          if (++n > 3) throw new Error('OOM command not allowed when used memory > maxmemory');
          yield ref;
        }
      }
      await expect(submitRun({ spec, refs: dying(), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(out), jobsPerBulk: 1 })).rejects.toThrow(
        /maxmemory/,
      );
      const otherList = join(work.path, 'other.txt');
      await writeFile(otherList, `${join(images, 'img-0.png')}\n`);
      const hybrid = await planRun(config, otherList, join(work.path, 'out-hybrid'), rt.models, 'resume-1');
      await expect(
        submitRun({ spec: hybrid, refs: refsOf(otherList), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(hybrid.out) }),
      ).rejects.toThrow(/^run resume-1 already exists with another spec.*\n {2}out: .*\n {2}source: /s);
      const resumed = await submitRun({ spec, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(out) });
      expect(resumed).toMatchObject({ alreadySubmitted: true, images: N });
      const summary = await waitForRun(rt.tracker, 'resume-1', () => {});
      expect(summary.images).toBe(N);
      const report = await verifyManifest(refsOf(images), readManifestLines(out, s3.stores));
      expect([report.ok, report.manifestRows]).toEqual([true, N]);
    });
  });

  it('of two identical submissions at the same moment, exactly one creates the run', async () => {
    const prefix = uniquePrefix('race');
    const config = await cascadeConfig(prefix);
    await withRuntime(config, async (rt) => {
      const out = join(work.path, 'out-race');
      const spec = await planRun(config, images, out, rt.models, 'race-1');
      const submit = () => submitRun({ spec, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(out) });
      const results = await Promise.all([submit(), submit()]);
      expect(results.map((r) => r.alreadySubmitted).sort()).toEqual([false, true]);
      const summary = await waitForRun(rt.tracker, 'race-1', () => {});
      expect(summary.images).toBe(N);
      const report = await verifyManifest(refsOf(images), readManifestLines(out, s3.stores));
      expect([report.ok, report.manifestRows, report.counts.duplicate]).toEqual([true, N, 0]);
    });
  });
});

describe('an output location holds one run', () => {
  for (const where of ['directory', 'S3 prefix'] as const) {
    it(`a second run aimed at the same ${where} is refused; --overwrite clears the first run's objects and takes it`, async () => {
      const prefix = uniquePrefix('out');
      const config = await cascadeConfig(prefix);
      const out = where === 'directory' ? join(work.path, 'out-shared') : 's3://shared/runs/x/';
      await withRuntime(config, async (rt) => {
        const first = await runTo(rt, config, out, 'first');
        expect([first.report.ok, first.report.manifestRows]).toEqual([true, N]);
        const marker = JSON.parse((await rt.openOutput(out).get(RUN_MARKER_KEY)).toString('utf8'));
        expect(marker).toMatchObject({ runId: 'first', specHash: expect.stringMatching(/^[0-9a-f]{64}$/) });

        const second = await planRun(await cascadeConfig(prefix, 0.5), images, out, rt.models, 'second');
        const err = await submitRun({ spec: second, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(out) }).catch(
          (e: Error) => e,
        );
        expect(err).toBeInstanceOf(OutputClaimedError);
        expect((err as Error).message).toMatch(
          / holds run first \(created .*\); choose another --out, or pass --overwrite to delete that run's objects there first$/,
        );
        expect(await rt.tracker.spec('second')).toBeNull();

        // A user's own file next to the run's objects survives the overwrite.
        await rt.openOutput(out).put('notes.txt', 'mine');
        const taken = await runTo(rt, config, out, 'second-ok', true);
        expect([taken.report.ok, taken.report.manifestRows]).toEqual([true, N]);
        const keys: string[] = [];
        for await (const o of rt.openOutput(out).list('')) keys.push(o.key);
        const parts = keys.filter((k) => k.startsWith('parts/'));
        const ids = await Promise.all(parts.map(async (k) => ResultPart.parse(JSON.parse((await rt.openOutput(out).get(k)).toString('utf8'))).runId));
        expect(new Set(ids)).toEqual(new Set(['second-ok']));
        expect(keys).toContain('notes.txt');
      });
    });
  }

  it('a merge refuses a foreign part instead of reading it as input', async () => {
    const prefix = uniquePrefix('foreign');
    const config = await cascadeConfig(prefix);
    const out = join(work.path, 'out-foreign');
    // Another run's part where this run's batch 0 will be (written around the marker, as a run of an older version would).
    const store = new LocalStore(out);
    await withRuntime(config, async (rt) => {
      const spec = await planRun(config, images, out, rt.models, 'own');
      const foreign = ResultPart.parse({
        runId: 'someone-else',
        batch: 2,
        stage: 0,
        stageName: 'little',
        rows: [],
        stats: { images: 0, accepted: 0, forwarded: 0, errors: 0, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0 },
      });
      // Stop the merge worker from taking the run until the foreign part is in place.
      await rt.queues.merge.pause();
      await submitRun({ spec, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: store });
      while (!(await rt.tracker.progress('own'))!.completedAt) await new Promise((r) => setTimeout(r, 50));
      await store.put('parts/00000002.stage0.json', JSON.stringify(foreign));
      await rt.queues.merge.resume();
      // The merge's first attempt fails on the foreign part (retries would fail alike; the last one marks the run failed).
      const merge = async () => rt.queues.merge.getJob(mergeJobId('own'));
      for (let i = 0; i < 200 && !(await merge())?.failedReason; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await rt.tracker.progress('own'))!.mergedAt).toBeNull();
      expect((await merge())!.failedReason).toMatch(
        /parts\/00000002\.stage0\.json in .* belongs to run someone-else, not own: two runs share this output location/,
      );
    });
  });

  it('an output location that cannot be written is refused before any job is queued', async () => {
    const prefix = uniquePrefix('ro');
    const config = await cascadeConfig(prefix);
    const file = join(work.path, 'a-file');
    await writeFile(file, 'not a directory');
    await withRuntime(config, async (rt) => {
      const spec = await planRun(config, images, join(file, 'out'), rt.models, 'ro-1');
      await expect(submitRun({ spec, refs: refsOf(images), tracker: rt.tracker, queues: rt.queues, output: rt.openOutput(spec.out) })).rejects.toThrow(
        /^cannot write to the output location .*a-file\/out: /,
      );
      expect(await rt.queues.stage('little').getJobCounts('waiting')).toEqual({ waiting: 0 });
    });
  });
});

describe('specDifferences', () => {
  it('lists nothing for the same run planned again (its probe and time may differ)', async () => {
    const prefix = uniquePrefix('diff');
    const config = await cascadeConfig(prefix);
    await withRuntime(config, async (rt) => {
      const a = await planRun(config, images, join(work.path, 'o'), rt.models, 'd');
      const b = {
        ...a,
        createdAt: '2020-01-01T00:00:00.000Z',
        stages: a.stages.map((s) => ({ ...s, model: { ...s.model, probe: { ...s.model.probe, provider: 'webgpu' } } })),
      };
      expect(specDifferences(a, b)).toEqual([]);
    });
  });
});
