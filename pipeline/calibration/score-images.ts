/**
 * Runs one model over a list of images and keeps the full probability rows (the cascade keeps
 * only top-5): the input of calibration. Images that cannot be fetched or decoded are
 * reported, not fatal.
 */
import pLimit from 'p-limit';
import type { StageModel } from '../classify-batch.js';
import { preprocessImage } from '../image/preprocess.js';
import type { Tensor } from '../onnx/float16.js';
import type { ScoredImages } from './prob-cache.js';

export interface ScoreDeps {
  fetch: (ref: string) => Promise<Buffer>;
  maxPixels: number;
  /** Images fetched and decoded at once. */
  fetchConcurrency: number;
  /** Images per inference call. */
  batchSize: number;
}

/** Probability rows of `model` for each ref; `onProgress` gets the number of refs done so far. */
export async function scoreImages(refs: readonly string[], model: StageModel, deps: ScoreDeps, onProgress?: (done: number) => void): Promise<ScoredImages> {
  const { io } = model.pool;
  const perImage = io.channels * io.height * io.width;
  const probs = new Map<string, Float32Array>();
  const errors = new Map<string, string>();
  let classes = 0;
  const limit = pLimit(deps.fetchConcurrency);
  for (let start = 0; start < refs.length; start += deps.batchSize) {
    const chunk = refs.slice(start, start + deps.batchSize);
    const tensors = await Promise.all(
      chunk.map((ref) =>
        limit(async () => {
          try {
            const bytes = await deps.fetch(ref);
            return await preprocessImage(bytes, model.preprocess, { height: io.height, width: io.width, dtype: io.inputDtype }, { maxPixels: deps.maxPixels });
          } catch (err) {
            errors.set(ref, err instanceof Error ? err.message : String(err));
            return null;
          }
        }),
      ),
    );
    const ready = chunk.map((ref, i) => ({ ref, tensor: tensors[i] })).filter((r): r is { ref: string; tensor: Tensor } => r.tensor != null);
    if (ready.length > 0) {
      const batch = io.inputDtype === 'float16' ? new Uint16Array(ready.length * perImage) : new Float32Array(ready.length * perImage);
      ready.forEach((r, i) => batch.set(r.tensor, i * perImage));
      const result = await model.pool.infer(batch, ready.length);
      classes = result.classes;
      ready.forEach((r, i) => probs.set(r.ref, result.probs.slice(i * classes, (i + 1) * classes)));
    }
    onProgress?.(Math.min(start + deps.batchSize, refs.length));
  }
  return { classes, probs, errors };
}
