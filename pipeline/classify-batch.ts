/**
 * The work of one cascade stage on one batch: fetch, decode and preprocess each image,
 * run the model on all that decoded, and decide per image whether to accept or forward.
 * Per-image failures become error rows; only a model failure fails the batch.
 */
import pLimit from 'p-limit';
import type { ConfidenceMetric, PreprocessSpec } from '../config/schema.js';
import type { InferencePool } from './inference/inference-pool.js';
import type { ImageErrorKind, PartRow, StageStats } from './results/manifest.js';
import { ObjectNotFoundError, ObjectTooLargeError } from './storage/object-store.js';
import { ImageDecodeError, preprocessImage } from './image/preprocess.js';
import { accepts, predict, type Prediction } from './routing.js';
import { preprocessKey, type TensorCache } from './image/tensor-cache.js';
import type { Tensor } from './onnx/float16.js';

/** A model as one stage of the cascade sees it. */
export interface StageModel {
  name: string;
  pool: InferencePool;
  preprocess: PreprocessSpec;
  labels: string[] | null;
}

/** An image of a batch: its reference and its position in the original batch. */
export interface BatchItem {
  ref: string;
  pos: number;
}

export interface ClassifyDeps {
  /** Read an image's bytes (local path or s3:// URL). */
  fetch: (ref: string) => Promise<Buffer>;
  maxPixels: number;
  /** Images fetched and decoded at once. */
  fetchConcurrency: number;
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
}

export interface StageDecision {
  /** Threshold for accepting; null on the last stage, which accepts everything. */
  threshold: number | null;
  metric: ConfidenceMetric;
}

export interface StageResult {
  /** Final rows: accepted answers and errors. */
  rows: PartRow[];
  /** Images the next stage must look at. */
  forward: BatchItem[];
  /** This stage's confidence in each forwarded image, in `forward` order (for the run's histogram). */
  forwardedConfidence: number[];
  stats: StageStats;
}

type Ready = { item: BatchItem; tensor: Tensor };

/** Map a thrown error to the manifest's error kind. */
export function errorKind(err: unknown): ImageErrorKind {
  if (err instanceof ObjectNotFoundError) return 'not-found';
  if (err instanceof ObjectTooLargeError) return 'too-large';
  if (err instanceof ImageDecodeError) return err.reason === 'too-many-pixels' ? 'too-large' : 'decode';
  return 'fetch';
}

/** Run one stage over a batch and split it into final rows and images to forward. */
export async function classifyBatch(items: BatchItem[], model: StageModel, decision: StageDecision, deps: ClassifyDeps): Promise<StageResult> {
  const started = performance.now();
  const { io } = model.pool;
  const perImage = io.channels * io.height * io.width;
  const rows: PartRow[] = [];
  let fetchMs = 0;
  let decodeMs = 0;
  const shape = { height: io.height, width: io.width, dtype: io.inputDtype };
  const how = preprocessKey(model.preprocess, shape);

  const forward: BatchItem[] = [];
  const forwardConf = new Map<number, number>();
  let inferMs = 0;
  const calls: Array<Promise<void>> = [];
  let failure: { err: unknown } | null = null;
  const inferGroup = async (group: Ready[]) => {
    group.sort((a, b) => a.item.pos - b.item.pos);
    const batch = io.inputDtype === 'float16' ? new Uint16Array(group.length * perImage) : new Float32Array(group.length * perImage);
    group.forEach((r, i) => batch.set(r.tensor, i * perImage));
    const { probs, classes, ms } = await model.pool.infer(batch, group.length);
    inferMs += ms;
    group.forEach(({ item, tensor }, i) => {
      const prediction = predict(probs.subarray(i * classes, (i + 1) * classes), decision.metric);
      if (decision.threshold === null || accepts(prediction.confidence, decision.threshold)) rows.push(answerRow(item, prediction, model));
      else {
        forward.push(item);
        forwardConf.set(item.pos, prediction.confidence);
        deps.tensorCache?.put(item.ref, how, tensor);
      }
    });
  };
  // A failed call is held until every decode is done, then fails the batch (never an unhandled rejection).
  const send = (group: Ready[]) => {
    if (group.length === 0) return;
    calls.push(
      inferGroup(group).catch((err: unknown) => {
        if (deps.inferenceErrorsAsRows) for (const { item } of group) rows.push(errorRow(item, 'inference', err));
        else failure ??= { err };
      }),
    );
  };
  const chunk = deps.inferChunk && deps.inferChunk > 0 ? deps.inferChunk : Number.POSITIVE_INFINITY;
  let gathered: Ready[] = [];
  const gather = (r: Ready) => {
    gathered.push(r);
    if (gathered.length >= chunk) {
      send(gathered);
      gathered = [];
    }
  };

  const limit = pLimit(deps.fetchConcurrency);
  await Promise.all(
    items.map((item) =>
      limit(async () => {
        const cached = deps.tensorCache?.take(item.ref, how);
        if (cached) return gather({ item, tensor: cached });
        try {
          const t0 = performance.now();
          const bytes = await deps.fetch(item.ref);
          const t1 = performance.now();
          const tensor = await preprocessImage(bytes, model.preprocess, shape, { maxPixels: deps.maxPixels });
          decodeMs += performance.now() - t1;
          fetchMs += t1 - t0;
          gather({ item, tensor });
        } catch (err) {
          rows.push(errorRow(item, errorKind(err), err));
        }
      }),
    ),
  );

  send(gathered);
  await Promise.all(calls);
  if (failure) throw (failure as { err: unknown }).err;

  // Calls finish in any order; parts and forwarded jobs keep batch order.
  rows.sort((a, b) => a.pos - b.pos);
  forward.sort((a, b) => a.pos - b.pos);
  const errors = rows.filter((r) => r.error).length;
  return {
    rows,
    forward,
    forwardedConfidence: forward.map((f) => forwardConf.get(f.pos)!),
    stats: {
      images: items.length,
      accepted: rows.length - errors,
      forwarded: forward.length,
      errors,
      fetchMs,
      decodeMs,
      inferMs,
      jobMs: performance.now() - started,
    },
  };
}

function answerRow(item: BatchItem, p: Prediction, model: StageModel): PartRow {
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
