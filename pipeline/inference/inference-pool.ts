/**
 * A pool of worker threads, each holding a session of the same model. The caller sends
 * preprocessed batches and gets probability rows back, without blocking its event loop.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { ExecutionProvider } from '../../config/schema.js';
import { BatchAccumulator } from './batch-accumulator.js';
import type { ModelIO, SessionOptions } from './model-session.js';
import { ModelLoadError } from './model-session.js';
import type { ThreadData, ThreadTask } from './inference-thread.js';
import { threadEntry } from './thread-entry.js';
import { ThreadGroupCpu } from './thread-cpu.js';
import type { Tensor } from '../onnx/float16.js';

export interface PoolOptions extends SessionOptions {
  /** Worker threads, each with its own session. */
  threads: number;
  /**
   * For a model with a dynamic batch dimension: how long a partial batch waits for requests
   * from other jobs to fill it up to maxBatch, ms; 0 sends each request as it comes. Absent:
   * DEFAULT_ACCUMULATE_MS unless the model runs on the CPU provider.
   */
  accumulateMs?: number;
}

export interface InferResult {
  /** n × classes probabilities, row-major. */
  probs: Float32Array;
  classes: number;
  /** Time inside session.run for this batch, ms. */
  ms: number;
  /** CPU seconds the pool thread used for this batch (absent where threads cannot be measured). */
  cpuSeconds?: number;
}

/** How long a partial batch waits for more requests when accumulateMs is not given (GPU providers). */
export const DEFAULT_ACCUMULATE_MS = 20;

/**
 * How long a partial batch waits for other requests (0: no accumulation). Only models with a
 * dynamic batch dimension accumulate; the configured accumulateMs wins, else it is on
 * (DEFAULT_ACCUMULATE_MS) for every provider the session actually opened on except the CPU, where
 * a batch of 32 costs what four of 8 do, so waiting for one only adds latency.
 */
export function accumulationWaitMs(accumulateMs: number | undefined, provider: ExecutionProvider, fixedBatch: number | null): number {
  if (fixedBatch !== null) return 0;
  return accumulateMs ?? (provider === 'cpu' ? 0 : DEFAULT_ACCUMULATE_MS);
}

/** Inference for one model across worker threads. */
export class InferencePool {
  /** Set by quiesceAll: no new task (model load or session run) starts on a thread in this process. */
  private static quiescing = false;
  /**
   * Tasks on the threads of every pool in this process: model loads (the first `describe` opens
   * the session) as well as session runs. Either is native work a thread cannot be stopped in.
   */
  private static inFlight = 0;
  /** Session runs this pool has started (at most one a thread: the rest wait in `waiting`). */
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly threads: number;
  /** The kernel thread ids of every open pool's threads (ThreadData.threadIds), and their CPU read live. */
  private static readonly threadTables = new Set<Int32Array>();
  private static readonly threadCpu = new ThreadGroupCpu();

  /**
   * CPU seconds every inference thread of this process has used so far (0 where threads cannot be
   * measured). The CPU cost meter takes it off the process clock and charges each call its
   * thread's time instead (pipeline/cost/cost-meter.ts).
   */
  static threadCpuSeconds(): number {
    for (const ids of InferencePool.threadTables) {
      const n = Math.min(Atomics.load(ids, 0), ids.length - 1);
      for (let i = 1; i <= n; i++) {
        const tid = Atomics.load(ids, i);
        if (tid > 0) InferencePool.threadCpu.add(tid);
      }
    }
    return InferencePool.threadCpu.seconds();
  }

  /**
   * Start no new task on any thread, and resolve once none is in flight (or after `timeoutMs`).
   * A thread must not be terminated inside native onnxruntime work (a session run or a model
   * load): onnxruntime-node then throws a C++ Napi::Error nobody catches and the process aborts
   * (exit 134). A process exiting at once does this first (cli/exit-now.ts); the requests left
   * waiting never settle.
   */
  static async quiesceAll(timeoutMs: number): Promise<void> {
    InferencePool.quiescing = true;
    const end = Date.now() + timeoutMs;
    while (InferencePool.inFlight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  }

  /** Tasks on the threads right now, across every pool of this process (for tests). */
  static tasksInFlight(): number {
    return InferencePool.inFlight;
  }

  /** Run `task` on a thread of `pool`, counted in `inFlight` until the thread has answered. */
  private static async onThread<T>(pool: Piscina, task: ThreadTask, transferList?: ArrayBuffer[]): Promise<T> {
    InferencePool.inFlight++;
    try {
      return (await pool.run(task, transferList ? { transferList } : {})) as T;
    } finally {
      InferencePool.inFlight--;
    }
  }

  /** Merges concurrent requests into full batches; null for fixed-batch models or no accumulation. */
  readonly accumulator: BatchAccumulator | null;

  /** ORT threads each call keeps busy: the pool thread and its session's own intra-op threads. */
  readonly intraOpThreads: number;

  private constructor(
    private readonly pool: Piscina,
    readonly modelPath: string,
    readonly io: ModelIO,
    readonly provider: ExecutionProvider,
    options: PoolOptions,
    private readonly threadIds: Int32Array,
  ) {
    // 0 leaves the choice to ORT, which takes a thread per core.
    this.intraOpThreads = options.intraOpThreads > 0 ? options.intraOpThreads : availableParallelism();
    const waitMs = accumulationWaitMs(options.accumulateMs, provider, io.fixedBatch);
    this.accumulator = waitMs > 0 ? new BatchAccumulator((data, n) => this.send(data, n), { maxBatch: options.maxBatch, maxWaitMs: waitMs }) : null;
    this.threads = Math.max(1, options.threads);
  }

  /** Start the threads and load the model once, failing fast with a clear error if it cannot load. */
  static async open(modelPath: string, options: PoolOptions): Promise<InferencePool> {
    // Exiting: no thread starts loading a model it could then be stopped in.
    if (InferencePool.quiescing) return new Promise<InferencePool>(() => {});
    const { filename, workerData } = threadEntry('./inference-thread', import.meta.url);
    // Room for threads that piscina replaces after a crash; ids past the end are not counted.
    const threadIds = new Int32Array(new SharedArrayBuffer(4 * (1 + 4 * Math.max(1, options.threads))));
    const data: ThreadData = { modelPath, options: sessionOptions(options), threadIds };
    const pool = new Piscina({
      filename,
      workerData: { ...workerData, ...data },
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Each thread runs one batch at a time; ORT parallelises inside it.
      concurrentTasksPerWorker: 1,
    });
    try {
      const described = await InferencePool.onThread<{ io: ModelIO; provider: ExecutionProvider }>(pool, { kind: 'describe' });
      InferencePool.threadTables.add(threadIds);
      return new InferencePool(pool, modelPath, described.io, described.provider, options, threadIds);
    } catch (err) {
      await pool.destroy();
      if (err instanceof Error && err.name === 'ModelLoadError') throw new ModelLoadError(err.message);
      throw new ModelLoadError(`cannot load model ${modelPath}: ${(err as Error).message}`);
    }
  }

  /** Classify `n` stacked CHW images; the input buffer is transferred to the thread. */
  infer(data: Tensor, n: number): Promise<InferResult> {
    return this.accumulator ? this.accumulator.infer(data, n) : this.send(data, n);
  }

  /** Classify in one call of its own, never merged with other requests nor kept waiting for them (the conformance probe). */
  inferAlone(data: Tensor, n: number): Promise<InferResult> {
    return this.send(data, n);
  }

  private async send(data: Tensor, n: number): Promise<InferResult> {
    await this.acquire();
    try {
      return await this.dispatch(data, n);
    } finally {
      this.release();
    }
  }

  /** A thread slot: the run starts on a free thread at once, never queued inside piscina (see quiesceAll). */
  private acquire(): Promise<void> {
    if (InferencePool.quiescing) return new Promise<void>(() => {});
    if (this.running < this.threads) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Hand the slot to the next waiting request, if any (none once quiescing). */
  private release(): void {
    const next = InferencePool.quiescing ? undefined : this.waiting.shift();
    if (next) next();
    else this.running--;
  }

  private async dispatch(data: Tensor, n: number): Promise<InferResult> {
    return InferencePool.onThread<InferResult>(this.pool, { kind: 'infer', data, n }, [data.buffer as ArrayBuffer]);
  }

  /** Stop the threads. */
  async close(): Promise<void> {
    // Read once more: the threads' time stays counted after they exit.
    InferencePool.threadCpuSeconds();
    InferencePool.threadTables.delete(this.threadIds);
    await this.pool.destroy();
  }
}

function sessionOptions(o: PoolOptions): SessionOptions {
  return {
    executionProviders: o.executionProviders,
    intraOpThreads: o.intraOpThreads,
    output: o.output,
    maxBatch: o.maxBatch,
    graphOptimization: o.graphOptimization,
    numerics: o.numerics ?? 'exact',
  };
}
