/**
 * Preprocessed tensors of forwarded images, kept for the next stage in the same process so
 * that it does not fetch and decode the image again when it preprocesses exactly alike (same
 * spec, input size and dtype — the default little and big models do). A stage in another
 * process simply misses and fetches. Each entry is taken once.
 *
 * When full, new entries are refused rather than old ones evicted: the next stage consumes
 * its queue oldest first, so the oldest entries are the ones about to be used. Entries older
 * than maxAgeMs (their job went to another process, or failed) are dropped to make room.
 */
import type { PreprocessSpec } from '../../config/schema.js';
import type { Tensor } from '../onnx/float16.js';
import type { ModelInputShape } from './preprocess.js';

/** The part of a key that says how an image was preprocessed. */
export function preprocessKey(spec: PreprocessSpec, input: ModelInputShape): string {
  return JSON.stringify([input.height, input.width, input.dtype, spec]);
}

/** A byte-bounded map from (image ref, preprocessing) to tensor, read once. */
export class TensorCache {
  // Insertion order is age order, so expired entries sit at the front.
  private readonly entries = new Map<string, { tensor: Tensor; at: number }>();
  private bytes = 0;
  /** Lookups that found their tensor, and those that did not. */
  hits = 0;
  misses = 0;

  constructor(
    readonly maxBytes: number,
    readonly maxAgeMs = 120_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Keep `tensor` for a later take; false when it does not fit. */
  put(ref: string, how: string, tensor: Tensor): boolean {
    const key = `${how}\n${ref}`;
    this.dropExpired();
    if (this.entries.has(key) || this.bytes + tensor.byteLength > this.maxBytes) return false;
    this.entries.set(key, { tensor, at: this.now() });
    this.bytes += tensor.byteLength;
    return true;
  }

  /** The tensor kept for `ref` preprocessed as `how`, removed from the cache; undefined if absent. */
  take(ref: string, how: string): Tensor | undefined {
    const key = `${how}\n${ref}`;
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    this.entries.delete(key);
    this.bytes -= entry.tensor.byteLength;
    this.hits++;
    return entry.tensor;
  }

  private dropExpired(): void {
    const oldest = this.now() - this.maxAgeMs;
    for (const [key, entry] of this.entries) {
      if (entry.at > oldest) break;
      this.entries.delete(key);
      this.bytes -= entry.tensor.byteLength;
    }
  }

  /** Bytes held now. */
  get size(): number {
    return this.bytes;
  }
}
