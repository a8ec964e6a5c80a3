/**
 * The read half of a stage: image references in, model-ready tensors (or the reason there is
 * none) out, a bounded number of fetches and decodes at a time. The inference half
 * (inference/infer-chunks.ts) consumes this stream while it is still running, so the first
 * calls overlap the decoding of the rest of the batch.
 */
import type { PreprocessSpec } from '../../config/schema.js';
import type { SampleLocator } from '../inputs/sample-locator.js';
import type { Tensor } from '../onnx/float16.js';
import { preprocessImage, type ModelInputShape } from './preprocess.js';
import { preprocessKey, type TensorCache } from './tensor-cache.js';

/** An image of a batch: its reference and its position in the original batch. */
export interface BatchItem {
  ref: string;
  pos: number;
  /** A sharded sample's place in its shard (WebDataset member, Parquet cell); absent for a loose image. */
  at?: SampleLocator;
}

export interface DecodeDeps {
  /** Read an image's bytes (local path or s3:// URL; a sharded sample at `at` in its shard). */
  fetch: (ref: string, at?: SampleLocator) => Promise<Buffer>;
  maxPixels: number;
  /** Images fetched and decoded at once. */
  fetchConcurrency: number;
  /** Tensors a previous stage in this process kept for images it forwarded. */
  tensorCache?: TensorCache;
  /** Told +1 when an image's decode starts and −1 when it ends (the job's cost meter; the fetch before it is not counted). */
  onWork?: (delta: number) => void;
}

/** An image turned into a tensor; a cache hit costs no fetch or decode time. */
export interface Ready {
  ok: true;
  item: BatchItem;
  tensor: Tensor;
  fetchMs: number;
  decodeMs: number;
  /** The tensor came from the tensor cache: this stage neither fetched nor decoded it. */
  cached: boolean;
}

/** An image that could not be fetched or decoded, with what was thrown. */
export interface Unreadable {
  ok: false;
  item: BatchItem;
  err: unknown;
}

export type Decoded = Ready | Unreadable;

/**
 * 'ready': as each image finishes, so inference can start on the first ones done;
 * 'input': in the order given, when chunks must be cut by position.
 */
export type DecodeOrder = 'ready' | 'input';

/** Fetch and preprocess `items` for a model input, at most fetchConcurrency at once, yielding each as `order` says. */
export function decodeStream(
  items: readonly BatchItem[],
  preprocess: PreprocessSpec,
  shape: ModelInputShape,
  deps: DecodeDeps,
  order: DecodeOrder = 'ready',
): AsyncGenerator<Decoded> {
  const how = preprocessKey(preprocess, shape);
  return boundedMap(items, deps.fetchConcurrency, (item) => decodeOne(item, preprocess, shape, how, deps), order);
}

/** One image to a tensor: from the tensor cache when a previous stage kept it, else fetched and decoded; never rejects. */
export async function decodeOne(item: BatchItem, preprocess: PreprocessSpec, shape: ModelInputShape, how: string, deps: DecodeDeps): Promise<Decoded> {
  try {
    const cached = deps.tensorCache?.take(item.ref, how);
    if (cached) return { ok: true, item, tensor: cached, fetchMs: 0, decodeMs: 0, cached: true };
    const t0 = performance.now();
    const bytes = await deps.fetch(item.ref, item.at);
    const t1 = performance.now();
    // Only the decode counts as work for the cost meter: a fetch mostly waits on the network, and
    // counting it charged a stage with many fetches in flight for another stage's inference.
    deps.onWork?.(1);
    try {
      const tensor = await preprocessImage(bytes, preprocess, shape, { maxPixels: deps.maxPixels });
      return { ok: true, item, tensor, fetchMs: t1 - t0, decodeMs: performance.now() - t1, cached: false };
    } finally {
      deps.onWork?.(-1);
    }
  } catch (err) {
    return { ok: false, item, err };
  }
}

type Settled<R> = { ok: true; value: R } | { ok: false; err: unknown };

/** `fn` over `inputs` with at most `width` results running or waiting to be taken, yielded as `order` says. */
export async function* boundedMap<T, R>(inputs: readonly T[], width: number, fn: (input: T) => Promise<R>, order: DecodeOrder): AsyncGenerator<R> {
  // A finished result not yet taken keeps its slot: a consumer that pauses (scoring waits for each
  // inference call) stops the reading ahead instead of piling up tensors for a whole image list.
  if (!(width >= 1)) throw new TypeError(`concurrency must be at least 1, got ${width}`);
  const finished = new Map<number, Settled<R>>();
  const completion: number[] = [];
  let running = 0;
  let next = 0;
  let wake: (() => void) | null = null;
  const launch = () => {
    while (next < inputs.length && running + finished.size < width) {
      const i = next++;
      running++;
      const settle = (s: Settled<R>) => {
        running--;
        finished.set(i, s);
        if (order === 'ready') completion.push(i);
        wake?.();
      };
      // A synchronous throw in fn must settle like a rejection, not escape launch().
      Promise.resolve()
        .then(() => fn(inputs[i]!))
        .then(
          (value) => settle({ ok: true, value }),
          (err: unknown) => settle({ ok: false, err }),
        );
    }
  };
  let head = 0;
  const take = (): number | undefined => (order === 'input' ? (finished.has(head) ? head++ : undefined) : completion.shift());
  launch();
  for (let taken = 0; taken < inputs.length; taken++) {
    let i = take();
    while (i === undefined) {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      i = take();
    }
    const s = finished.get(i)!;
    finished.delete(i);
    launch();
    if (!s.ok) throw s.err;
    yield s.value;
  }
}
