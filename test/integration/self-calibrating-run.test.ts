/**
 * Self-calibrating runs (`--target-agreement`) on a real redis-server with the generated colour
 * models, whose every answer is known: saturated colours are ~0.997 sure and agree with big,
 * greys are ≤ 0.34 sure and never agree. A warm-up goes through both stages, the threshold is
 * decided once from it, only then do the ordinary batches run; refusals are loud.
 */
import type { Job } from 'bullmq';
import { Queue } from 'bullmq';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRunStatus, formatRunStatus } from '../../cli/format-status.js';
import { formatSummary } from '../../cli/format-summary.js';
import { loadConfig } from '../../config/load-config.js';
import { ManifestRow, type ResultPart } from '../../pipeline/results/manifest.js';
import { verifyProvenance } from '../../pipeline/results/verify-provenance.js';
import { warmupPartKey } from '../../pipeline/results/output-layout.js';
import type { WarmupPart } from '../../pipeline/results/warmup-part.js';
import { ThresholdDecision } from '../../pipeline/self-calibration.js';
import { confidence, rankConfidence, rankReferenceOf, softmax } from '../../pipeline/routing.js';
import type { ModelCache } from '../../pipeline/models/model-cache.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { chooseWarmup, inWarmup } from '../../pipeline/warmup-sample.js';
import { listSource } from '../../producers/list-source.js';
import { planRun } from '../../producers/plan-run.js';
import { submitRun } from '../../producers/submit-run.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { JOB_OPTIONS, type RunSpec, type StageJob, stageQueueName } from '../../queue/jobs.js';
import { DECIDED_AT_WARMUP } from '../../pipeline/routing-resolver.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { queueDecision, runDecision } from '../../queue/threshold-decision.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { StageWorker } from '../../workers/stage-worker.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';
import { fakePin, localFetch, RUN_DEFAULTS, testModelCache } from '../helpers/run-spec.js';
import { expectedBigProbs, expectedLittleLogits, writeTestModels, type TestModels } from '../helpers/test-models.js';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { writeSlowModels } from '../helpers/slow-models.js';

const N = 120;
const BATCH = 4;
const GREYS = [64, 96, 128, 160, 192, 224];
/** Every sixth image is a grey (20), the rest saturated red, green or blue (100). */
const IMAGES = Array.from({ length: N }, (_, i) => {
  const name = `img-${String(i).padStart(3, '0')}.png`;
  if (i % 6 === 5) {
    const v = GREYS[i % GREYS.length]!;
    return { name, rgb: [v, v, v] as const, grey: true };
  }
  const rgb = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
  ][i % 3]! as [number, number, number];
  return { name, rgb, grey: false };
});
/** The little model's maxprob on a saturated colour: softmax([8, 0, 0, 2]). */
const COLOUR_CONFIDENCE = Math.exp(8) / (Math.exp(8) + 2 + Math.exp(2));

let dir: string;
let images: string;
let models: TestModels;
/** The big model runs its answers through dead matmuls, so the cascade pays for itself at the warm-up's measured costs. */
let slow: Awaited<ReturnType<typeof writeSlowModels>>;
let redis: TestRedis;
const filePrefix = uniquePrefix('selfcal');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-selfcal-'));
  images = join(dir, 'images');
  await mkdir(images, { recursive: true });
  [models, slow, redis] = await Promise.all([
    writeTestModels(join(dir, 'models')),
    writeSlowModels(join(dir, 'slow-models'), { k: 512, matmuls: 16 }),
    startRedis(),
  ]);
  for (const img of IMAGES) {
    const [r, g, b] = img.rgb;
    const png = await sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
      .png()
      .toBuffer();
    await writeFile(join(images, img.name), png);
  }
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A config file for one scenario: the colour cascade, this Redis, its own prefix, local reads under dir. */
async function writeConfig(name: string, extra: Record<string, unknown> = {}): Promise<{ file: string; prefix: string }> {
  const prefix = `${filePrefix}-${name}`;
  const file = join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      little: colourSpec(models.colourLittle, models.labels),
      big: colourSpec(slow.big, models.labels),
      batchSize: BATCH,
      concurrency: 1,
      redisUrl: redis.url,
      prefix,
      sources: { localRoots: [dir] },
      ...extra,
    }),
  );
  return { file, prefix };
}

/** Plan and submit a self-calibrating run in this process, as `cascade submit` does (metric rank unless `extra` names one). */
async function submit(name: string, selfCalibration: NonNullable<RunSpec['selfCalibration']>, extra: Record<string, unknown> = {}) {
  const { file, prefix } = await writeConfig(name, extra);
  const config = await loadConfig({ file, env: {}, selfCalibrating: true });
  const connection = connectRedis(redis.url);
  const tracker = new RunTracker(connection, prefix);
  const queues = new CascadeQueues(connection, prefix);
  const planner = testModelCache();
  const out = join(dir, `out-${name}`);
  const spec = await planRun(config, images, out, planner, `${name}-run`, selfCalibration);
  await planner.close();
  const list = () => listSource(images, { extensions: config.extensions });
  const submitted = await submitRun({ spec, refs: list(), relist: list, tracker, queues, output: new LocalStore(out) });
  const close = async () => {
    await queues.close();
    connection.disconnect();
  };
  return { file, prefix, spec, tracker, queues, connection, out, submitted, close };
}

async function manifest(out: string): Promise<ManifestRow[]> {
  return (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
}

/** The keys of the run's warm-up, recomputed from the listing (the same rule as the submitter's). */
async function warmupKeys(runId: string, size: number): Promise<Set<string>> {
  const keys: string[] = [];
  for await (const k of listSource(images, { extensions: ['.png'] })) keys.push(k);
  const { cutoff } = await chooseWarmup(keys, runId, { images: size }, 0.95);
  return new Set(keys.filter((k) => inWarmup(runId, k, cutoff)));
}

const nameOf = (key: string) => key.slice(key.lastIndexOf('/') + 1);
const imageOf = (key: string) => IMAGES.find((i) => i.name === nameOf(key))!;

/**
 * A self-calibrating run whose warm-up is complete and whose threshold is not decided yet, made by
 * hand (no models): 40 warm-up images in two batches, 38 sure and agreeing, 2 unsure and disagreeing,
 * and three held ordinary batches.
 */
async function warmedUpRun(tracker: RunTracker, runId: string, out: string): Promise<{ spec: RunSpec; held: StageJob[] }> {
  const store = new LocalStore(out);
  const spec: RunSpec = {
    runId,
    source: images,
    out,
    metric: 'maxprob',
    batchSize: BATCH,
    ...RUN_DEFAULTS,
    stages: [
      { name: 'little', model: fakePin('little.onnx'), gmacsPerImage: 1, threshold: DECIDED_AT_WARMUP },
      { name: 'big', model: fakePin('big.onnx'), gmacsPerImage: 10, threshold: null },
    ],
    selfCalibration: { targetAgreement: 0.9, delta: 0.05, warmup: { images: 40 } },
    createdAt: new Date().toISOString(),
  };
  await tracker.create(spec);
  // A warm-up of 40 images in two batches: 38 sure and agreeing, 2 unsure and disagreeing.
  for (const batch of [0, 1]) {
    const answers = Array.from({ length: 20 }, (_, pos) => ({ pos, label: 0, confidence: pos === 19 ? 0.3 : 0.95 }));
    const stats = { images: 20, accepted: 0, forwarded: 20, errors: 0, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0 };
    const first: WarmupPart = { runId: spec.runId, batch, stage: 0, stageName: 'little', rows: [], stats, warmupAnswers: answers };
    const rows = answers.map(({ pos }) => ({
      pos,
      key: `k${batch}-${pos}`,
      label: pos === 19 ? 3 : 0,
      labelName: null,
      confidence: 0.9,
      stage: 'big',
      top5: [],
      error: null,
    }));
    const last: ResultPart = { runId: spec.runId, batch, stage: 1, stageName: 'big', rows, stats: { ...stats, accepted: 20, forwarded: 0 } };
    await store.put(warmupPartKey(batch, 0), JSON.stringify(first));
    await store.put(warmupPartKey(batch, 1), JSON.stringify(last));
    await tracker.finishPart(spec.runId, {
      id: `b${batch}w1`,
      stage: 1,
      final: 20,
      counts: { images: 20, accepted: 20, forwarded: 0, errors: 0 },
      lane: 'warmup',
    });
  }
  await tracker.addWarmupBatches(spec.runId, [0, 1]);
  const held: StageJob[] = [2, 3, 4].map((batch) => ({ runId: spec.runId, batch, stage: 0, items: [{ ref: join(images, IMAGES[batch]!.name), pos: 0 }] }));
  await tracker.hold(spec.runId, held);
  expect(await tracker.needsDecision(spec.runId)).toBe(false); // the listing is not finished
  await tracker.finishListing(spec.runId, 43, 5, 0, 40);
  expect(await tracker.needsDecision(spec.runId)).toBe(true);
  return { spec, held };
}

/** A quiet little-stage worker on local files, for tests that hand it jobs themselves. */
function littleWorker(connection: Redis, prefix: string, models: ModelCache, tracker: RunTracker, queues: CascadeQueues): StageWorker {
  return new StageWorker({
    connection,
    prefix,
    stage: 'little',
    models,
    concurrency: 1,
    fetch: localFetch,
    fetchConcurrency: 1,
    openOutput: (o) => new LocalStore(o),
    tracker,
    queues,
    log: () => {},
  });
}

describe('a self-calibrating run', () => {
  it('two worker processes: ordinary batches wait for the warm-up, the threshold is decided once, every image has one row, warm-up rows are big', async () => {
    const WARMUP = 80;
    // Half of the images little keeps are audited: the audit watches drift against the certified bound.
    // metric: maxprob named in the config, so the run certifies maxprob as before rank was the default.
    const run = await submit('fleet', { targetAgreement: 0.95, delta: 0.05, warmup: { images: WARMUP } }, { audit: { fraction: 0.5 }, metric: 'maxprob' });
    const workers: WorkerProcess[] = [];
    try {
      const { spec, tracker } = run;
      expect(spec.stages[0]!.threshold).toBe(DECIDED_AT_WARMUP);
      const warm = await warmupKeys(spec.runId, WARMUP);
      expect(warm.size).toBe(WARMUP);

      // Before any worker runs: only warm-up lane jobs are queued, one per batch holding warm-up images.
      const keys = IMAGES.map((i) => join(images, i.name));
      const warmBatches = new Set(keys.flatMap((k, i) => (warm.has(k) ? [Math.floor(i / BATCH)] : [])));
      const queue = new Queue(stageQueueName('little'), { connection: run.connection, prefix: run.prefix });
      const queued = (await queue.getJobs(['waiting'])).map((j) => j.id!).sort();
      await queue.close();
      expect(queued).toEqual([...warmBatches].map((b) => `${spec.runId}-b${b}-w0`).sort());
      expect(await tracker.decision(spec.runId)).toBeNull();
      expect((await tracker.progress(spec.runId))!.selfCalibration).toMatchObject({ warmupTotal: WARMUP, warmupDone: 0, decision: null, released: false });

      workers.push(spawnWorker(run.file, ['little', 'big', 'merge']), spawnWorker(run.file, ['little', 'big', 'merge']));
      await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));
      const summary = await waitForRun(tracker, spec.runId, () => {}, 200, run.queues);

      // The decision: the warm-up's colours are kept (none disagrees), its greys are not.
      const decision = ThresholdDecision.parse(JSON.parse((await tracker.decision(spec.runId))!));
      const warmColours = [...warm].filter((k) => !imageOf(k).grey).length;
      expect(spec.metric).toBe('maxprob');
      expect(decision).not.toHaveProperty('rankReference');
      expect(decision).toMatchObject({ certified: true, target: 0.95, delta: 0.05, sample: WARMUP, accepted: warmColours, empiricalAgreement: 1 });
      if (!decision.certified) throw new Error('not certified');
      expect(decision.threshold).toBeCloseTo(COLOUR_CONFIDENCE, 5);
      expect(decision.bound).toBeGreaterThanOrEqual(0.95);
      // Decided once: one decision line across both processes.
      const lines = workers.flatMap((w) => w.output().match(/threshold decided from the warm-up/g) ?? []);
      expect(lines).toHaveLength(1);

      // Every image exactly one row, in listing order; warm-up rows are big's, the rest routed by the decision.
      const rows = await manifest(run.out);
      expect(rows.map((r) => r.key)).toEqual(keys);
      for (const row of rows) {
        const img = imageOf(row.key);
        const stage = warm.has(row.key) || img.grey ? 'big' : 'little';
        expect([nameOf(row.key), row.stage, row.labelName], `${img.name} warm-up ${warm.has(row.key)}`).toEqual([
          img.name,
          stage,
          img.grey ? 'other' : ['red', 'green', 'blue'][img.rgb.indexOf(255)],
        ]);
      }

      // No ordinary batch ran before the decision was stored.
      const decidedAt = Date.parse(decision.decidedAt);
      const partFiles = (await readdir(join(run.out, 'parts'))).filter((f) => /^\d+\.stage0\.json$/.test(f));
      expect(partFiles).toHaveLength(N / BATCH);
      for (const f of partFiles) expect((await stat(join(run.out, 'parts', f))).mtimeMs, f).toBeGreaterThanOrEqual(decidedAt);

      // Batches of warm-up images only wrote an empty ordinary part that ran no model: provenance still holds.
      const allWarm = [...warmBatches].filter((b) => keys.slice(b * BATCH, (b + 1) * BATCH).every((k) => warm.has(k)));
      expect(allWarm.length).toBeGreaterThan(0);
      expect(await verifyProvenance(new LocalStore(run.out))).toMatchObject({ ok: true, unrecorded: 0, mismatchedCount: 0 });

      // The summary: warm-up, decision, and its compute counted in the MACs.
      const [g0, g1] = spec.stages.map((s) => s.gmacsPerImage) as [number, number];
      const greysOutside = IMAGES.filter((i) => i.grey && !warm.has(join(images, i.name))).length;
      expect(summary.selfCalibration).toEqual({ targetAgreement: 0.95, delta: 0.05, warmupImages: WARMUP, warmupGmacs: WARMUP * (g0 + g1), decision });
      expect(summary.threshold).toBe(decision.threshold);
      expect(summary.stages.map((s) => [s.name, s.images, s.accepted, s.forwarded])).toEqual([
        ['little', N, N - WARMUP - greysOutside, WARMUP + greysOutside],
        ['big', WARMUP + greysOutside, WARMUP + greysOutside, 0],
      ]);
      expect(summary.macs.cascadeG).toBeCloseTo(N * g0 + (WARMUP + greysOutside) * g1, 9);
      expect(formatSummary(summary)).toContain(`self-calibration: target 95.0% agreement at δ 0.05; warm-up ${WARMUP} images`);
      expect(summary.audit).toMatchObject({ promised: decision.bound, drift: false });
      expect(summary.audit!.sampled).toBeGreaterThan(0);
      expect(summary.audit!.agreeing).toBe(summary.audit!.sampled);

      // `cascade status` shows the warm-up and the decision.
      const status = buildRunStatus((await tracker.progress(spec.runId))!, [], new Date());
      expect(status.selfCalibration).toEqual({ targetAgreement: 0.95, delta: 0.05, warmupImages: WARMUP, warmupDone: WARMUP, decision });
      expect(status.audit).toMatchObject({ promised: decision.bound, sampled: summary.audit!.sampled });
      expect(formatRunStatus(status)).toContain(`self-calibration: target 95.0% at δ 0.05, warm-up ${WARMUP}/${WARMUP} images; threshold 0.9969`);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
      await run.close();
    }
  });

  it('by default certifies rank: the reference is built from the warm-up, stored in the decision, and routes every ordinary image', async () => {
    const WARMUP = 40;
    const run = await submit('rank', { targetAgreement: 0.9, delta: 0.05, warmup: { images: WARMUP } }, { audit: { fraction: 0.5 } });
    const worker = spawnWorker(run.file, ['little', 'big', 'merge']);
    try {
      const { spec, tracker } = run;
      expect(spec).toMatchObject({ metric: 'rank' });
      expect(spec.rankReference).toBeUndefined();
      const summary = await waitForRun(tracker, spec.runId, () => {}, 200, run.queues);
      const warm = await warmupKeys(spec.runId, WARMUP);

      // The decision certified rank on the warm-up and carries the reference: the little model's margin and pnorm on every warm-up image.
      const decision = ThresholdDecision.parse(JSON.parse((await tracker.decision(spec.runId))!));
      expect(decision).toMatchObject({ certified: true, metric: 'rank', delta: 0.05, sample: WARMUP, empiricalAgreement: 1 });
      if (!decision.certified || !decision.rankReference) throw new Error('no certified rank decision');
      const ref = decision.rankReference;
      const littleProbs = (k: string) => softmax(expectedLittleLogits(...(imageOf(k).rgb.map((v) => v / 255) as [number, number, number])));
      const warmProbs = [...warm].map(littleProbs);
      const expected = rankReferenceOf({ margin: warmProbs.map((p) => confidence(p, 'margin')), pnorm: warmProbs.map((p) => confidence(p, 'pnorm')) });
      // The model computes in float32: equal to the expected order statistics up to its rounding.
      for (const k of ['margin', 'pnorm'] as const) {
        expect(ref[k]).toHaveLength(WARMUP);
        ref[k].forEach((v, i) => expect(v, `${k}[${i}]`).toBeCloseTo(expected[k][i]!, 4));
      }
      expect(worker.output()).toMatch(/threshold decided from the warm-up: rank ≥ /);

      // Every ordinary image is where rankConfidence against the decision's reference puts it; warm-up rows are big's, with big's margin.
      const rows = await manifest(run.out);
      expect(rows).toHaveLength(N);
      let kept = 0;
      for (const row of rows) {
        const img = imageOf(row.key);
        if (warm.has(row.key)) {
          expect([img.name, row.stage]).toEqual([img.name, 'big']);
          const [r, g, b] = img.rgb.map((v) => v / 255) as [number, number, number];
          expect(row.confidence).toBeCloseTo(confidence(expectedBigProbs(r, g, b), 'margin'), 5);
          continue;
        }
        const rank = rankConfidence(littleProbs(row.key), ref);
        const stage = rank >= decision.threshold ? 'little' : 'big';
        expect([img.name, row.stage]).toEqual([img.name, stage]);
        if (stage === 'little') {
          kept++;
          expect(row.confidence).toBeCloseTo(rank, 9);
        }
      }
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBe(IMAGES.filter((i) => !i.grey && !warm.has(join(images, i.name))).length);

      // Audits rank with the same reference; summary and status name rank and keep the reference out of sight.
      expect(summary.audit).toMatchObject({ promised: decision.bound, drift: false });
      expect(summary.audit!.sampled).toBeGreaterThan(0);
      expect(summary.metric).toBe('rank');
      const { rankReference: _, ...stored } = decision;
      expect(summary.selfCalibration?.decision).toEqual({ ...stored, rankReferenceSize: ref.margin.length });
      expect(formatSummary(summary)).toMatch(/threshold [\d.]+ \(rank against the warm-up\): with probability/);
      expect(formatSummary(summary)).not.toMatch(/margin|pnorm/);
      const status = formatRunStatus(buildRunStatus((await tracker.progress(spec.runId))!, [], new Date()));
      expect(status).toMatch(/warm-up 40\/40 images; threshold [\d.]+ \(rank against the warm-up\), agreement/);
      expect(status).not.toMatch(/margin|pnorm/);
    } finally {
      await worker.stop();
      await run.close();
    }
  });

  it('a worker killed (kill -9) during the warm-up: the other finishes it, one decision, every image one row', async () => {
    const WARMUP = 80;
    // Short job locks, so the killed worker's jobs are re-run within seconds.
    const run = await submit(
      'killed',
      { targetAgreement: 0.95, delta: 0.05, warmup: { images: WARMUP } },
      { jobLocks: { lockDurationMs: 1500, stalledIntervalMs: 1000, maxStalledCount: 3 }, metric: 'maxprob' },
    );
    const workers = [spawnWorker(run.file, ['little', 'big', 'merge']), spawnWorker(run.file, ['little', 'big', 'merge'])];
    try {
      await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));
      let killed: Promise<void> | null = null;
      const summary = await waitForRun(
        run.tracker,
        run.spec.runId,
        (p) => {
          if (!killed && (p.selfCalibration?.warmupDone ?? 0) > 0) killed = workers[0]!.kill9();
        },
        20,
        run.queues,
      );
      expect(killed).not.toBeNull();
      await killed;
      const warm = await warmupKeys(run.spec.runId, WARMUP);
      const rows = await manifest(run.out);
      expect(rows.map((r) => r.key)).toEqual(IMAGES.map((i) => join(images, i.name)));
      for (const row of rows) expect([nameOf(row.key), row.stage]).toEqual([nameOf(row.key), warm.has(row.key) || imageOf(row.key).grey ? 'big' : 'little']);
      const decision = ThresholdDecision.parse(JSON.parse((await run.tracker.decision(run.spec.runId))!));
      expect(summary.selfCalibration?.decision).toEqual(decision);
      expect(decision).toMatchObject({ certified: true, sample: WARMUP });
      // At most one process logged the decision (the killed one may have died before or after).
      expect(workers.flatMap((w) => w.output().match(/threshold decided from the warm-up/g) ?? []).length).toBeLessThanOrEqual(1);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
      await run.close();
    }
  });

  it('a target the warm-up cannot certify sends every image to big and says so: warning, summary, status', async () => {
    const run = await submit('refused', { targetAgreement: 0.99, delta: 0.05, warmup: { images: 10 } });
    const worker = spawnWorker(run.file, ['little', 'big', 'merge']);
    try {
      const summary = await waitForRun(run.tracker, run.spec.runId, () => {}, 200, run.queues);
      const rows = await manifest(run.out);
      expect(rows).toHaveLength(N);
      expect(rows.filter((r) => r.stage !== 'big')).toEqual([]);
      expect(worker.output()).toMatch(/SELF-CALIBRATION REFUSED: the warm-up sample \(10 images\) cannot certify 99\.0% agreement/);
      expect(summary.selfCalibration?.decision).toMatchObject({ certified: false, target: 0.99, sample: 10 });
      expect(summary.stages[0]).toMatchObject({ images: N, accepted: 0, forwarded: N });
      // After the refusal the little model read only the 10 warm-up images: the rest went straight to big.
      const [g0, g1] = run.spec.stages.map((s) => s.gmacsPerImage) as [number, number];
      expect(summary.macs.saved).toBeCloseTo((-10 * g0) / (N * g1), 9);
      expect(summary.selfCalibration?.decision).toMatchObject({ route: 'big-only' });
      const parts = await Promise.all(
        Array.from(
          { length: N / BATCH },
          async (_, b) => JSON.parse(await readFile(join(run.out, 'parts', `${String(b).padStart(8, '0')}.stage0.json`), 'utf8')) as ResultPart,
        ),
      );
      expect(parts.reduce((n, p) => n + (p.skipped ?? 0), 0)).toBe(N - 10);
      expect(parts.every((p) => p.cost === undefined)).toBe(true);
      expect(formatSummary(summary)).toMatch(/REFUSED, every image went to the last stage/);
      expect(formatSummary(summary)).toMatch(/big-only: after the warm-up every image went straight to the last stage/);
      const status = formatRunStatus(buildRunStatus((await run.tracker.progress(run.spec.runId))!, [], new Date()));
      expect(status).toMatch(/self-calibration: target 99\.0% at δ 0\.05, warm-up 10\/10 images; REFUSED: /);
    } finally {
      await worker.stop();
      await run.close();
    }
  });

  it('a certified threshold whose cascade costs more than big alone sends the rest straight to big, at the warm-up measured costs', async () => {
    // A deliberately slow little model (about a GMAC of dead matmuls per image) before the
    // µs-cheap colour big model: the threshold certifies, but running little costs more than big.
    const run = await submit(
      'costly',
      { targetAgreement: 0.95, delta: 0.05, warmup: { images: 80 } },
      { metric: 'maxprob', little: colourSpec(slow.little, models.labels), big: colourSpec(models.colourBig, models.labels) },
    );
    const worker = spawnWorker(run.file, ['little', 'big', 'merge']);
    try {
      const summary = await waitForRun(run.tracker, run.spec.runId, () => {}, 200, run.queues);
      const decision = summary.selfCalibration?.decision;
      expect(decision).toMatchObject({ certified: true, route: 'big-only' });
      expect(decision?.expectedCost?.cascadePerImage).toBeGreaterThan(decision?.expectedCost?.bigOnlyPerImage ?? Number.POSITIVE_INFINITY);
      const rows = await manifest(run.out);
      expect(rows).toHaveLength(N);
      // Every ordinary image is big's: the little model labelled nothing after the warm-up.
      expect(rows.filter((r) => r.stage !== 'big')).toEqual([]);
      expect(summary.stages[0]!.accepted).toBe(0);
      expect(worker.output()).toMatch(/the rest of the run goes straight to big: the cascade would cost/);
      expect(formatSummary(summary)).toMatch(/big-only: after the warm-up every image went straight to the last stage/);
    } finally {
      await worker.stop();
      await run.close();
    }
  });

  it('several deciders at once store one decision and release the held batches once; an ordinary batch before it fails', async () => {
    const prefix = `${filePrefix}-deciders`;
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    const out = join(dir, 'out-deciders');
    const cache = testModelCache();
    try {
      const { spec, held } = await warmedUpRun(tracker, 'dec-1', out);

      // A worker handed an ordinary batch now (a bug elsewhere) refuses it instead of routing without the threshold.
      const worker = littleWorker(connection, prefix, cache, tracker, queues);
      await worker.worker.close();
      const job = { id: 'x', name: 'batch', data: held[0], attemptsMade: 0, opts: { ...JOB_OPTIONS } } as unknown as Job;
      await expect(worker.process(job)).rejects.toThrow(/before the threshold was decided/);
      await worker.close();

      const logs: string[] = [];
      const ctx = { tracker, queues, openOutput: (o: string) => new LocalStore(o), log: (m: string) => void logs.push(m) };
      const decisions = await Promise.all(Array.from({ length: 5 }, () => runDecision(spec.runId, ctx)));
      const stored = ThresholdDecision.parse(JSON.parse((await tracker.decision(spec.runId))!));
      for (const d of decisions) expect(d).toEqual(stored);
      expect(stored).toMatchObject({ certified: true, threshold: 0.95, accepted: 38, sample: 40, empiricalAgreement: 1 });
      expect(logs.filter((l) => /threshold decided/.test(l))).toHaveLength(1);
      // Released once: each held batch queued once, then the hold is gone.
      const queue = new Queue(stageQueueName('little'), { connection, prefix });
      expect((await queue.getJobs(['waiting'])).map((j) => j.id).sort()).toEqual(['dec-1-b2-s0', 'dec-1-b3-s0', 'dec-1-b4-s0']);
      await queue.close();
      expect((await tracker.progress(spec.runId))!.selfCalibration).toMatchObject({ released: true, warmupDone: 40, warmupTotal: 40 });
      expect(await runDecision(spec.runId, ctx)).toEqual(stored);
      expect(logs).toHaveLength(1);
    } finally {
      await cache.close();
      await queues.close();
      connection.disconnect();
    }
  });

  it('a decider that died after storing its decision: the retry keeps that decision and releases the held batches', async () => {
    const prefix = `${filePrefix}-crashed`;
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    try {
      const { spec } = await warmedUpRun(tracker, 'crash-1', join(dir, 'out-crashed'));
      // What the dead decider left: its decision stored (another threshold than this sample gives), nothing released.
      const dead: ThresholdDecision = {
        certified: true,
        target: 0.9,
        delta: 0.05,
        threshold: 0.5,
        bound: 0.9,
        accepted: 1,
        sample: 40,
        empiricalAgreement: 1,
        fractionAccepted: 0.5,
        decidedAt: '2026-11-30T00:00:00.000Z',
      };
      await tracker.decide(spec.runId, JSON.stringify(dead));
      expect(await tracker.needsDecision(spec.runId)).toBe(true);
      const logs: string[] = [];
      const ctx = { tracker, queues, openOutput: (o: string) => new LocalStore(o), log: (m: string) => void logs.push(m) };
      expect(await runDecision(spec.runId, ctx)).toEqual(dead);
      expect(logs).toEqual([]);
      const queue = new Queue(stageQueueName('little'), { connection, prefix });
      expect((await queue.getJobs(['waiting'])).map((j) => j.id).sort()).toEqual(['crash-1-b2-s0', 'crash-1-b3-s0', 'crash-1-b4-s0']);
      await queue.close();
      expect(await tracker.needsDecision(spec.runId)).toBe(false);
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });

  it('a decision that fails for good ends the wait with the retry line instead of hanging', async () => {
    const prefix = `${filePrefix}-stuck`;
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, prefix);
    const queues = new CascadeQueues(connection, prefix);
    const cache = testModelCache();
    const spec: RunSpec = {
      runId: 'stuck-1',
      source: images,
      // Its warm-up parts are missing there: every attempt of the decision fails.
      out: join(dir, 'out-stuck'),
      metric: 'maxprob',
      batchSize: BATCH,
      ...RUN_DEFAULTS,
      stages: [
        { name: 'little', model: fakePin('little.onnx'), gmacsPerImage: 1, threshold: DECIDED_AT_WARMUP },
        { name: 'big', model: fakePin('big.onnx'), gmacsPerImage: 10, threshold: null },
      ],
      selfCalibration: { targetAgreement: 0.9, delta: 0.05 },
      createdAt: new Date().toISOString(),
    };
    const worker = littleWorker(connection, prefix, cache, tracker, queues);
    try {
      await tracker.create(spec);
      await tracker.addWarmupBatches(spec.runId, [0]);
      await tracker.finishPart(spec.runId, { id: 'b0w1', stage: 1, final: 4, counts: { images: 4, accepted: 4, forwarded: 0, errors: 0 }, lane: 'warmup' });
      await tracker.finishListing(spec.runId, 4, 1, 0, 4);
      await queueDecision(queues, spec);
      await expect(waitForRun(tracker, spec.runId, () => {}, 100, queues)).rejects.toThrow(/little:stuck-1-decide[\s\S]*cascade retry stuck-1/);
    } finally {
      await worker.close();
      await cache.close();
      await queues.close();
      connection.disconnect();
    }
  });
});
