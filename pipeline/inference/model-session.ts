/**
 * One onnxruntime-node session for one model: discovers the model's input/output contract,
 * chooses an execution provider with fallback, and turns any output into probability rows.
 * Runs wherever it is created; the inference pool creates it inside worker threads so the
 * synchronous native work never blocks a BullMQ worker's event loop.
 */
import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { CascadeError } from '../../config/errors.js';
import type { ExecutionProvider, SessionNumerics } from '../../config/schema.js';
import { fromFloat16Bits, type Tensor } from '../onnx/float16.js';
import { DataType, decodeModel, encodeModel, type TensorProto } from '../onnx/onnx-proto.js';
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
  /**
   * int8 kernels on the CPU provider: 'exact' (absent: 'exact') gives the same answers on every
   * x86 CPU; 'native' keeps ORT's defaults, which saturate on CPUs without VNNI (sessionConfigEntries).
   */
  numerics?: SessionNumerics;
}

/**
 * The ORT session config entries for a provider list, keyed as ORT names them; passed as the
 * session's `extra` (the Node binding joins nested keys with '.', so flat dotted keys arrive as is).
 */
export function sessionConfigEntries(numerics: SessionNumerics, providers: readonly ExecutionProvider[]): Record<string, string> {
  const entries: Record<string, string> = {
    // ORT's pool threads busy-wait between ops by default. Next to a second model's session,
    // libvips decoding and other workers, that spinning took cores from the work itself: CPU
    // per image of a big-only pipeline run fell from 146 to 80 ms without it (docs/performance.md).
    'session.intra_op.allow_spinning': '0',
    'session.inter_op.allow_spinning': '0',
  };
  // On x86 CPUs without VNNI (AVX2-only, SSE4.2) ORT's u8s8 int8 kernels saturate intermediate
  // sums, so int8 models answered differently per CPU; '1' converts int8 weights to uint8 for
  // U8U8 kernels, which give the VNNI CPUs' answers (docs/models.md, "Numerics"). ORT applies it
  // on VNNI CPUs too: the same answers there, but the int8 models run up to 2x slower.
  if (numerics === 'exact' && providers.includes('cpu')) entries['session.x64quantprecision'] = '1';
  return entries;
}

/**
 * The model with every int8 initializer that several node inputs read given one copy per reader;
 * null when none is shared (or the bytes are no ONNX model). With x64quantprecision ORT converts
 * each int8 weight and weight zero point of a QLinearConv/QLinearMatMul/MatMulInteger… to uint8
 * under the fixed name `<name>_s8_2_u8`, so a weight two nodes share (the ensemble runs the same
 * MobileNetV2 on the photo and its mirror) is converted twice and the session fails with "Attempt
 * to replace the existing tensor". Re-encoding keeps what pipeline/onnx/onnx-proto.ts models.
 */
export function unshareInt8Initializers(bytes: Uint8Array): Uint8Array | null {
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(bytes);
  } catch {
    return null;
  }
  const graph = model.graph;
  if (!graph?.node?.length || !graph.initializer?.length) return null;
  // An initializer that is also a graph input can be overridden at run time: ORT leaves it alone.
  const inputs = new Set((graph.input ?? []).map((v) => v.name));
  const int8 = new Map(graph.initializer.filter((t) => t.data_type === DataType.INT8 && t.name && !inputs.has(t.name)).map((t) => [t.name!, t]));
  if (int8.size === 0) return null;
  const taken = new Set<string>([...graph.initializer.map((t) => t.name ?? ''), ...inputs.values()].filter(Boolean) as string[]);
  for (const node of graph.node) for (const name of node.output ?? []) taken.add(name);
  const uses = new Map<string, number>();
  const copies: TensorProto[] = [];
  for (const node of graph.node) {
    node.input = (node.input ?? []).map((name) => {
      const tensor = int8.get(name);
      if (!tensor) return name;
      const n = uses.get(name) ?? 0;
      uses.set(name, n + 1);
      if (n === 0) return name;
      let copy = `${name}__reader${n}`;
      while (taken.has(copy)) copy += '_';
      taken.add(copy);
      copies.push({ ...tensor, name: copy });
      return copy;
    });
  }
  if (copies.length === 0) return null;
  graph.initializer.push(...copies);
  return encodeModel(model);
}

/** Raised when a model cannot be opened or does not fit the image-classifier contract. */
export class ModelLoadError extends CascadeError {
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
  for (const [dim, name] of [
    [c, 'channels'],
    [h, 'height'],
    [w, 'width'],
  ] as const) {
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
      // onnxruntime drops a provider its build lacks (DirectML off Windows, CoreML off Apple) with
      // a warning and runs on the CPU: the session would then claim a provider it does not use.
      if (!availableProviders().has(providers[0]!)) {
        failures.push(`${providers[0]}: not in this onnxruntime build`);
        continue;
      }
      try {
        const session = await createSession(path, providers, options);
        return new ModelSession(session, describeSession(session, path), providers[0]!, options);
      } catch (err) {
        if (err instanceof ModelLoadError) throw err;
        failures.push(`${providers[0]}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    throw new ModelLoadError(`cannot load model ${path} with any execution provider (${failures.join('; ')})`);
  }

  /** Run `n` stacked images (n×C×H×W) and return n probability rows, flattened, plus the class count. */
  async run(data: Tensor, n: number): Promise<{ probs: Float32Array; classes: number }> {
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
      const values = toFloat32(out.data as Tensor, out.type);
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

/** Execution providers this onnxruntime-node build has (bundled, or loadable from a library). */
function availableProviders(): Set<string> {
  return new Set(ort.listSupportedBackends().map((b) => b.name));
}

/**
 * An ORT session for `path` on `providers` with the project's session settings (numerics, no
 * spinning, the int8 unsharing retry); `more` adds ORT options that change no output (profiling).
 */
export async function createSession(
  path: string,
  providers: readonly ExecutionProvider[],
  options: Pick<SessionOptions, 'graphOptimization' | 'intraOpThreads' | 'numerics'>,
  more: Pick<ort.InferenceSession.SessionOptions, 'enableProfiling' | 'profileFilePrefix'> = {},
): Promise<ort.InferenceSession> {
  const extra = sessionConfigEntries(options.numerics ?? 'exact', providers);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    ...more,
    executionProviders: [...providers],
    graphOptimizationLevel: options.graphOptimization,
    // ORT rejects an explicit undefined; 0 means "let ORT decide".
    ...(options.intraOpThreads > 0 ? { intraOpNumThreads: options.intraOpThreads } : {}),
    extra,
  };
  const retryable = extra['session.x64quantprecision'] === '1';
  try {
    // Where a failure is retried below, ORT's own log line for it would only alarm (severity 4:
    // fatal only); the error itself still comes back as an exception.
    return await ort.InferenceSession.create(path, retryable ? { ...sessionOptions, logSeverityLevel: 4 } : sessionOptions);
  } catch (err) {
    // A model whose int8 weights are shared between nodes fails to load with x64quantprecision
    // (unshareInt8Initializers); load it again from a copy in which each node has its own.
    if (!retryable) throw err;
    const unshared = unshareInt8Initializers(await readFile(path).catch(() => new Uint8Array()));
    if (!unshared) throw err;
    return await ort.InferenceSession.create(unshared, sessionOptions);
  }
}

function padBatch<T extends Tensor>(slice: T, length: number): T {
  const out = new (slice.constructor as { new (n: number): T })(length);
  out.set(slice);
  return out;
}

function toFloat32(data: Tensor, type: string): Float32Array {
  if (type === 'float32') return data as Float32Array;
  if (type === 'float16') return Float32Array.from(data as Uint16Array, fromFloat16Bits);
  throw new ModelLoadError(`model output type ${type} is not supported; expected float32 or float16`);
}
