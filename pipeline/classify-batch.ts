/**
 * The work of one cascade stage on one batch: the decode stream (image/decode-stream.ts) feeds
 * the inference calls (inference/infer-chunks.ts), and each image's answer is accepted or
 * forwarded here. Per-image failures become error rows; only a model failure fails the batch.
 */
import type { ConfidenceMetric, RankReference } from '../config/schema.js';
import type { InferencePool } from './inference/inference-pool.js';
import type { StageModel } from './models/loaded-model.js';
import type { ImageErrorKind, PartRow, StageStats } from './results/manifest.js';
import { isForbiddenPath } from './storage/local-roots.js';
import { isObjectTruncated, ObjectNotFoundError, ObjectTooLargeError } from './storage/object-store.js';
import { unreadableKind } from './inputs/read-sample.js';
import { ParquetInputError } from './inputs/parquet-file.js';
import { ImageDecodeError, type ModelInputShape } from './image/preprocess.js';
import { accepts, confidence, predict, type Prediction } from './routing.js';
import { preprocessKey, type TensorCache } from './image/tensor-cache.js';
import { decodeStream, type BatchItem, type DecodeDeps, type Ready } from './image/decode-stream.js';
import { ChunkCalls, chunkSize, type ChunkOutcome, type ChunkPool } from './inference/infer-chunks.js';

export type { BatchItem } from './image/decode-stream.js';

export interface ClassifyDeps extends DecodeDeps {
  /** Tensors of forwarded images, for a next stage in this process that preprocesses alike. */
  tensorCache?: TensorCache;
  /**
   * Images per inference call: a call starts as soon as that many are decoded, so the rest
   * of the batch decodes while it runs. Absent or 0: one call once the whole batch is decoded.
   */
  inferChunk?: number;
  /**
   * Turn a failed inference call into `inference` error rows for just that call's images,
   * keeping every other row (the stage worker's last attempt). Default: the call fails the batch.
   */
  inferenceErrorsAsRows?: boolean;
  /** What one inference call weighs against one decode for the cost meter (onWork): the cores it keeps busy. */
  inferWeight?: number;
  /** Told the CPU seconds each inference call's thread used, where measured (the job's cost meter charges them to it). */
  onCallCpu?: (seconds: number) => void;
}

export interface StageDecision {
  /** Threshold for accepting; null on the last stage, which accepts everything. */
  threshold: number | null;
  metric: ConfidenceMetric;
  /** Metric rank: the run's reference (RunSpec.rankReference, or a self-calibrating run's decided one). */
  rankReference?: RankReference;
  /** Record each answered image's margin and pnorm (the warm-up's first stage: a rank run's reference is built from them). */
  signals?: boolean;
  /**
   * Every answered image goes on to the next stage with its answer (a warm-up stage before the
   * last): its tensor is kept for that stage like a forwarded image's, so the warm-up's next stage
   * costs what it will for the run's forwarded images.
   */
  answersGoOn?: boolean;
}

export interface StageResult {
  /** Final rows: accepted answers and errors. */
  rows: PartRow[];
  /** Images the next stage must look at. */
  forward: BatchItem[];
  /** This stage's confidence in each forwarded image, in `forward` order (for the run's histogram). */
  forwardedConfidence: number[];
  stats: StageStats;
  /** With `signals`: each answered image's margin and pnorm, by position. */
  signals?: Map<number, { margin: number; pnorm: number }>;
  /** Images this stage fetched and decoded itself (the others came from the tensor cache or failed). */
  decoded: number;
}

/** Map a thrown error to the manifest's error kind. */
export function imageErrorKind(err: unknown): ImageErrorKind {
  if (isForbiddenPath(err)) return 'forbidden';
  if (err instanceof ObjectNotFoundError) return 'not-found';
  if (err instanceof ObjectTooLargeError) return 'too-large';
  const sample = unreadableKind(err);
  if (sample) return sample;
  // A shard cut short, or a Parquet file that fails to decode: its bytes are not an image.
  if (isObjectTruncated(err) || err instanceof ParquetInputError) return 'decode';
  if (err instanceof ImageDecodeError) return err.reason === 'too-many-pixels' ? 'too-large' : 'decode';
  return 'fetch';
}

/** The tensor a model takes for one image. */
export function modelInput(pool: InferencePool): ModelInputShape {
  return { height: pool.io.height, width: pool.io.width, dtype: pool.io.inputDtype };
}

/** Run one stage over a batch and split it into final rows and images to forward. */
export async function classifyBatch(items: BatchItem[], model: StageModel, decision: StageDecision, deps: ClassifyDeps): Promise<StageResult> {
  const started = performance.now();
  const shape = modelInput(model.pool);
  const how = preprocessKey(model.preprocess, shape);
  const rows: PartRow[] = [];
  const calls = new ChunkCalls<Ready>(metered(model.pool, deps), chunkSize(deps.inferChunk));
  let fetchMs = 0;
  let decodeMs = 0;
  let decoded = 0;
  for await (const d of decodeStream(items, model.preprocess, shape, deps)) {
    if (!d.ok) {
      rows.push(errorRow(d.item, imageErrorKind(d.err), d.err));
      continue;
    }
    decodeMs += d.decodeMs;
    fetchMs += d.fetchMs;
    if (!d.cached) decoded += 1;
    calls.add(d);
  }

  const routed = routeOutcomes(await calls.finish(), model, decision, deps.inferenceErrorsAsRows ?? false);
  // Cached even when the batch then fails: its retry takes them back instead of fetching again.
  for (const f of [...routed.forward, ...routed.goOn]) deps.tensorCache?.put(f.item.ref, how, f.tensor);
  // Held until every decode and call is done, so a failure is never an unhandled rejection.
  if (routed.failure) throw routed.failure.err;

  rows.push(...routed.rows);
  // Calls finish in any order; parts and forwarded jobs keep batch order.
  rows.sort((a, b) => a.pos - b.pos);
  const forward = routed.forward.sort((a, b) => a.item.pos - b.item.pos);
  const errors = rows.filter((r) => r.error).length;
  return {
    ...(routed.signals ? { signals: routed.signals } : {}),
    rows,
    forward: forward.map((f) => f.item),
    forwardedConfidence: forward.map((f) => f.confidence),
    decoded,
    stats: {
      images: items.length,
      accepted: rows.length - errors,
      forwarded: forward.length,
      errors,
      fetchMs,
      decodeMs,
      inferMs: routed.inferMs,
      jobMs: performance.now() - started,
    },
  };
}

/** The pool, telling `onWork` when each inference call starts and ends, and `onCallCpu` what its thread used. */
function metered(pool: InferencePool, deps: Pick<ClassifyDeps, 'onWork' | 'inferWeight' | 'onCallCpu'>): ChunkPool {
  const { onWork, onCallCpu } = deps;
  if (!onWork && !onCallCpu) return pool;
  const weight = deps.inferWeight ?? 1;
  return {
    io: pool.io,
    infer: async (batch, images) => {
      onWork?.(weight);
      try {
        const r = await pool.infer(batch, images);
        if (r.cpuSeconds !== undefined) onCallCpu?.(r.cpuSeconds);
        return r;
      } finally {
        onWork?.(-weight);
      }
    },
  };
}

/** A stage that skips the batch: every image goes on to the next stage, nothing fetched or inferred. */
export function skipBatch(items: BatchItem[]): StageResult {
  return {
    rows: [],
    forward: items,
    forwardedConfidence: [],
    decoded: 0,
    stats: { images: items.length, accepted: 0, forwarded: items.length, errors: 0, fetchMs: 0, decodeMs: 0, inferMs: 0, jobMs: 0 },
  };
}

/** An image the stage was not confident enough about, with the tensor a next stage can reuse. */
export interface Forwarded {
  item: BatchItem;
  tensor: Ready['tensor'];
  confidence: number;
}

/** Accept or forward each answered image, in call settle order; a failed call becomes inference error rows or the batch's failure. */
export function routeOutcomes(
  outcomes: ReadonlyArray<ChunkOutcome<Ready>>,
  model: Pick<StageModel, 'name' | 'labels'>,
  decision: StageDecision,
  errorsAsRows: boolean,
): {
  rows: PartRow[];
  forward: Forwarded[];
  /** With answersGoOn: the accepted images, whose tensors the next stage takes too. */
  goOn: Array<Pick<Forwarded, 'item' | 'tensor'>>;
  inferMs: number;
  failure: { err: unknown } | null;
  signals?: StageResult['signals'];
} {
  const rows: PartRow[] = [];
  const forward: Forwarded[] = [];
  const goOn: Array<Pick<Forwarded, 'item' | 'tensor'>> = [];
  const signals: StageResult['signals'] = decision.signals ? new Map() : undefined;
  let inferMs = 0;
  let failure: { err: unknown } | null = null;
  for (const o of outcomes) {
    if (!o.ok) {
      if (errorsAsRows) rows.push(...o.images.map(({ item }) => errorRow(item, 'inference', o.err)));
      else failure ??= { err: o.err };
      continue;
    }
    inferMs += o.ms;
    o.images.forEach(({ item, tensor }, i) => {
      const probs = o.probs[i]!;
      const prediction = predict(probs, decision.metric, decision.rankReference);
      signals?.set(item.pos, { margin: confidence(probs, 'margin'), pnorm: confidence(probs, 'pnorm') });
      if (decision.threshold === null || accepts(prediction.confidence, decision.threshold)) {
        rows.push(answerRow(item, prediction, model));
        if (decision.answersGoOn) goOn.push({ item, tensor });
      } else forward.push({ item, tensor, confidence: prediction.confidence });
    });
  }
  return { rows, forward, goOn, inferMs, failure, ...(signals ? { signals } : {}) };
}

function answerRow(item: BatchItem, p: Prediction, model: Pick<StageModel, 'name' | 'labels'>): PartRow {
  const name = (label: number) => model.labels?.[label] ?? null;
  return {
    pos: item.pos,
    key: item.ref,
    label: p.label,
    labelName: name(p.label),
    confidence: p.confidence,
    stage: model.name,
    top5: p.top5.map((t) => ({ label: t.label, name: name(t.label), p: t.p })),
    error: null,
  };
}

/** A manifest row recording why an image has no label. */
export function errorRow(item: BatchItem, kind: ImageErrorKind, err: unknown): PartRow {
  const message = err instanceof Error ? err.message : String(err);
  return { pos: item.pos, key: item.ref, label: null, labelName: null, confidence: null, stage: null, top5: [], error: { kind, message } };
}
