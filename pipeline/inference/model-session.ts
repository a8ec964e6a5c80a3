/**
 * One onnxruntime-node session for one model: discovers the model's input/output contract,
 * chooses an execution provider with fallback, and turns any output into probability rows.
 * Runs wherever it is created; the inference pool creates it inside worker threads so the
 * synchronous native work never blocks a BullMQ worker's event loop.
 */
import ort from 'onnxruntime-node';
import type { ExecutionProvider } from '../../config/schema.js';
import { fromFloat16Bits } from '../onnx/float16.js';
import { looksLikeProbabilities, softmax } from '../routing.js';

/** What a model expects and returns, read from the graph itself. */
export interface ModelIO {
  inputName: string;
  outputName: string;
  inputDtype: 'float32' | 'float16';
  channels: number;
  height: number;
  width: number;
  /** The fixed batch size of the graph, or null when the batch dimension is symbolic. */
  fixedBatch: number | null;
}

export interface SessionOptions {
  executionProviders: readonly ExecutionProvider[];
  intraOpThreads: number;
  output: 'auto' | 'logits' | 'probabilities';
  maxBatch: number;
  graphOptimization: 'disabled' | 'basic' | 'extended' | 'all';
}

/** Raised when a model cannot be opened or does not fit the image-classifier contract. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

/** Read input/output names, dtype and dimensions from an open session. */
export function describeSession(session: ort.InferenceSession, path: string): ModelIO {
  const input = session.inputMetadata[0];
  const output = session.outputMetadata[0];
  if (!input?.isTensor || !output?.isTensor) throw new ModelLoadError(`${path}: expected one tensor input and one tensor output`);
  if (input.type !== 'float32' && input.type !== 'float16') {
    throw new ModelLoadError(`${path}: input '${input.name}' is ${input.type}; only float32 and float16 image inputs are supported`);
  }
  const shape = input.shape;
  if (shape.length !== 4) throw new ModelLoadError(`${path}: input '${input.name}' has shape [${shape.join(',')}]; expected NCHW`);
  const [n, c, h, w] = shape;
  for (const [dim, name] of [[c, 'channels'], [h, 'height'], [w, 'width']] as const) {
    if (typeof dim !== 'number' || dim <= 0) throw new ModelLoadError(`${path}: input ${name} must be a fixed size, got '${dim}'`);
  }
  if (c !== 3) throw new ModelLoadError(`${path}: input has ${c} channels; expected 3 (RGB/BGR)`);
  return {
    inputName: input.name,
    outputName: output.name,
    inputDtype: input.type,
    channels: c as number,
    height: h as number,
    width: w as number,
    fixedBatch: typeof n === 'number' && n > 0 ? n : null,
  };
}

/** An open model that classifies stacked CHW images into probability rows. */
export class ModelSession {
  private outputIsProbabilities: boolean | null;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly io: ModelIO,
    readonly provider: ExecutionProvider,
    private readonly options: SessionOptions,
  ) {
    this.outputIsProbabilities = options.output === 'auto' ? null : options.output === 'probabilities';
  }

  /** Open a model, trying the configured execution providers in order until one loads. */
  static async open(path: string, options: SessionOptions): Promise<ModelSession> {
    const failures: string[] = [];
    for (let i = 0; i < options.executionProviders.length; i++) {
      // Keep the later providers in the list so ORT can place nodes the first one lacks.
      const providers = options.executionProviders.slice(i);
      try {
        const session = await ort.InferenceSession.create(path, {
          executionProviders: [...providers],
          graphOptimizationLevel: options.graphOptimization,
          // ORT rejects an explicit undefined; 0 means "let ORT decide".
          ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
          // ORT's pool threads busy-wait between ops by default. Next to a second model's session,
          // libvips decoding and other workers, that spinning took cores from the work itself: CPU
          // per image of a big-only pipeline run fell from 146 to 80 ms without it (docs/performance.md).
          extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
        });
        return new ModelSession(session, describeSession(session, path), providers[0]!, options);
      } catch (err) {
        if (err instanceof ModelLoadError) throw err;
        failures.push(`${providers[0]}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    throw new ModelLoadError(`cannot load model ${path} with any execution provider (${failures.join('; ')})`);
  }

  /** Run `n` stacked images (n×C×H×W) and return n probability rows, flattened, plus the class count. */
  async run(data: Float32Array | Uint16Array, n: number): Promise<{ probs: Float32Array; classes: number }> {
    const { channels, height, width, fixedBatch } = this.io;
    const perImage = channels * height * width;
    if (data.length !== n * perImage) throw new Error(`batch holds ${data.length} values; expected ${n}×${perImage}`);
    const chunk = fixedBatch ?? this.options.maxBatch;
    const rows: Float32Array[] = [];
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      const slice = data.subarray(start * perImage, (start + count) * perImage);
      const padded = fixedBatch !== null && count < fixedBatch ? padBatch(slice, fixedBatch * perImage) : slice;
      const batch = fixedBatch ?? count;
      const feed = new ort.Tensor(this.io.inputDtype, padded, [batch, channels, height, width]);
      const result = await this.session.run({ [this.io.inputName]: feed });
      const out = result[this.io.outputName]!;
      const values = toFloat32(out.data as Float32Array | Uint16Array, out.type);
      const classes = values.length / batch;
      for (let r = 0; r < count; r++) rows.push(values.subarray(r * classes, (r + 1) * classes));
    }
    const classes = rows[0]?.length ?? 0;
    const probs = new Float32Array(n * classes);
    rows.forEach((row, r) => probs.set(this.toProbabilities(row), r * classes));
    return { probs, classes };
  }

  /** Release the native session. */
  async close(): Promise<void> {
    await this.session.release();
  }

  private toProbabilities(row: Float32Array): Float32Array {
    // 'auto' decides once, on the first row, so one model never mixes the two readings.
    this.outputIsProbabilities ??= looksLikeProbabilities(row);
    return this.outputIsProbabilities ? row : softmax(row);
  }
}

function padBatch<T extends Float32Array | Uint16Array>(slice: T, length: number): T {
  const out = new (slice.constructor as { new (n: number): T })(length);
  out.set(slice);
  return out;
}

function toFloat32(data: Float32Array | Uint16Array, type: string): Float32Array {
  if (type === 'float32') return data as Float32Array;
  if (type === 'float16') return Float32Array.from(data as Uint16Array, fromFloat16Bits);
  throw new ModelLoadError(`model output type ${type} is not supported; expected float32 or float16`);
}
