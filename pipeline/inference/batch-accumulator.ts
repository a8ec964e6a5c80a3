/**
 * Fills the batches of a model with a dynamic batch dimension across callers: inference
 * requests that arrive within `maxWaitMs` of each other (several small forwarded jobs of the
 * big stage, say) are stacked into one call of up to `maxBatch` images, and each caller gets
 * its own rows back. A request that fills a batch by itself is sent at once.
 */
import type { Tensor } from '../onnx/float16.js';

export interface BatchRun {
  /** n × classes probabilities, row-major. */
  probs: Float32Array;
  classes: number;
  /** Time inside session.run, ms. */
  ms: number;
  /** CPU seconds of the thread that ran it, where measured. */
  cpuSeconds?: number;
}

/** The inference call being fed: stacked CHW images in, probability rows out. */
export type RunBatch = (data: Tensor, n: number) => Promise<BatchRun>;

export interface AccumulatorOptions {
  /** Images per call the accumulator aims for. */
  maxBatch: number;
  /** Longest a request waits for others before its partial batch is sent. */
  maxWaitMs: number;
}

interface Pending {
  data: Tensor;
  n: number;
  resolve: (r: BatchRun) => void;
  reject: (err: unknown) => void;
}

/** Stacks concurrent inference requests into shared batches. */
export class BatchAccumulator {
  private pending: Pending[] = [];
  private images = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Inference calls made, and images sent in them (for tests and metrics). */
  readonly calls: number[] = [];

  constructor(
    private readonly run: RunBatch,
    private readonly o: AccumulatorOptions,
  ) {
    if (!(o.maxBatch >= 1) || !(o.maxWaitMs >= 0)) throw new RangeError(`maxBatch must be ≥ 1 and maxWaitMs ≥ 0, got ${o.maxBatch} and ${o.maxWaitMs}`);
  }

  /** Classify `n` stacked images, possibly in one call with other requests. */
  infer(data: Tensor, n: number): Promise<BatchRun> {
    return new Promise<BatchRun>((resolve, reject) => {
      // A request that would overflow the batch being gathered sends that batch first.
      if (this.images > 0 && this.images + n > this.o.maxBatch) this.flush();
      this.pending.push({ data, n, resolve, reject });
      this.images += n;
      if (this.images >= this.o.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.maxWaitMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const group = this.pending;
    const total = this.images;
    this.pending = [];
    this.images = 0;
    if (group.length === 0) return;
    this.calls.push(total);
    void this.send(group, total);
  }

  private async send(group: Pending[], total: number): Promise<void> {
    try {
      const data = group.length === 1 ? group[0]!.data : stack(group.map((p) => p.data));
      const { probs, classes, ms, cpuSeconds } = await this.run(data, total);
      let row = 0;
      for (const p of group) {
        // Each caller is charged its share of the call, so summed per-job times stay true.
        const share = p.n / total;
        p.resolve({
          probs: probs.slice(row * classes, (row + p.n) * classes),
          classes,
          ms: ms * share,
          ...(cpuSeconds === undefined ? {} : { cpuSeconds: cpuSeconds * share }),
        });
        row += p.n;
      }
    } catch (err) {
      for (const p of group) p.reject(err);
    }
  }
}

function stack(parts: Tensor[]): Tensor {
  const length = parts.reduce((sum, p) => sum + p.length, 0);
  const out = parts[0] instanceof Uint16Array ? new Uint16Array(length) : new Float32Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
