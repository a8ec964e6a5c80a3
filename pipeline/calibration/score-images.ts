/**
 * Runs one model over a list of images and keeps the full probability rows (the cascade keeps
 * only top-5): the input of calibration. Images that cannot be fetched or decoded are
 * reported, not fatal.
 */
import { modelInput } from '../classify-batch.js';
import type { StageModel } from '../models/loaded-model.js';
import { decodeStream, type Ready } from '../image/decode-stream.js';
import { inferChunk } from '../inference/infer-chunks.js';
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
  const probs = new Map<string, Float32Array>();
  const errors = new Map<string, string>();
  let classes = 0;
  const items = refs.map((ref, pos) => ({ ref, pos }));
  let chunk: Ready[] = [];
  // Input order, so each call holds the decodable images of one slice of batchSize refs, as the
  // cached rows always were; the stream reads ahead while a call runs.
  for await (const d of decodeStream(items, model.preprocess, modelInput(model.pool), deps, 'input')) {
    if (d.ok) chunk.push(d);
    else errors.set(d.item.ref, d.err instanceof Error ? d.err.message : String(d.err));
    const done = d.item.pos + 1;
    if (done % deps.batchSize !== 0 && done !== refs.length) continue;
    if (chunk.length > 0) {
      const outcome = await inferChunk(model.pool, chunk);
      if (!outcome.ok) throw outcome.err;
      classes = outcome.classes;
      outcome.images.forEach((r, i) => probs.set(r.item.ref, outcome.probs[i]!.slice()));
    }
    chunk = [];
    onProgress?.(done);
  }
  return { classes, probs, errors };
}
