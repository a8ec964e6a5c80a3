/**
 * The inference half of a stage: chunks of decoded images, each stacked into one input for one
 * pool.infer call, back as one probability row per image. A failed call is an outcome for just
 * its own images, so the caller decides whether it fails the batch or becomes error rows.
 */
import type { Tensor } from '../onnx/float16.js';
import type { InferencePool } from './inference-pool.js';

/** What a call needs of an image: its tensor, and its batch position to order the stack. */
export interface ChunkImage {
  item: { pos: number };
  tensor: Tensor;
}

/** A call's images in stack order, with their probability rows or the call's error. */
export type ChunkOutcome<T extends ChunkImage> =
  | { ok: true; images: T[]; probs: Float32Array[]; classes: number; ms: number }
  | { ok: false; images: T[]; err: unknown };

/** The part of a pool a call uses (tests stand in for it). */
export type ChunkPool = Pick<InferencePool, 'io' | 'infer'>;

/** Images per call: absent or 0 means one call for everything. */
export function chunkSize(inferChunk: number | undefined): number {
  return inferChunk && inferChunk > 0 ? inferChunk : Number.POSITIVE_INFINITY;
}

/** One batch input of the model's dtype holding `tensors` back to back. */
export function stackTensors(tensors: readonly Tensor[], perImage: number, dtype: 'float32' | 'float16'): Tensor {
  const batch = dtype === 'float16' ? new Uint16Array(tensors.length * perImage) : new Float32Array(tensors.length * perImage);
  tensors.forEach((t, i) => batch.set(t, i * perImage));
  return batch;
}

/** One inference call on `chunk`, stacked in batch position order; resolves with the failure instead of rejecting. */
export async function inferChunk<T extends ChunkImage>(pool: ChunkPool, chunk: readonly T[]): Promise<ChunkOutcome<T>> {
  // Position order makes a chunk's input the same whichever image finished decoding first.
  const images = [...chunk].sort((a, b) => a.item.pos - b.item.pos);
  try {
    const { io } = pool;
    const batch = stackTensors(
      images.map((r) => r.tensor),
      io.channels * io.height * io.width,
      io.inputDtype,
    );
    const { probs, classes, ms } = await pool.infer(batch, images.length);
    return { ok: true, images, probs: images.map((_, i) => probs.subarray(i * classes, (i + 1) * classes)), classes, ms };
  } catch (err) {
    return { ok: false, images, err };
  }
}

/** Calls started each time `size` images have gathered, so they run while later images still decode. */
export class ChunkCalls<T extends ChunkImage> {
  private gathered: T[] = [];
  private readonly calls: Array<Promise<void>> = [];
  // Settle order, not chunk order: the first failure to arrive is the one a failed batch reports.
  private readonly settled: Array<ChunkOutcome<T>> = [];

  constructor(
    private readonly pool: ChunkPool,
    private readonly size: number,
  ) {}

  /** Add a decoded image, starting a call when it completes a chunk. */
  add(image: T): void {
    this.gathered.push(image);
    if (this.gathered.length >= this.size) this.send();
  }

  /** Send the last partial chunk and wait for every call; outcomes in the order the calls settled. */
  async finish(): Promise<Array<ChunkOutcome<T>>> {
    this.send();
    await Promise.all(this.calls);
    return this.settled;
  }

  private send(): void {
    if (this.gathered.length === 0) return;
    const chunk = this.gathered;
    this.gathered = [];
    this.calls.push(inferChunk(this.pool, chunk).then((o) => void this.settled.push(o)));
  }
}
