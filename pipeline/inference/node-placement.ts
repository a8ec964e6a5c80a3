/**
 * Which execution provider runs each node of a model. onnxruntime-node exposes no graph
 * partition, but onnxruntime's profiler records every node it runs with its provider, so one
 * profiled call on a zero input gives the placement after ORT's own partitioning and graph
 * optimisation: on a GPU provider, the nodes it lacks kernels for (int8 ops on WebGPU, say) show
 * up on the CPU, with the host↔device copies between them.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import type { ExecutionProvider, ModelSpec, SessionNumerics } from '../../config/schema.js';
import { createSession, describeSession } from './model-session.js';

/** The nodes one provider ran. */
export interface ProviderShare {
  /** Short name as the config spells it (cpu, webgpu, cuda, …), else ORT's name. */
  provider: string;
  nodes: number;
  /** Nodes per operator type. */
  ops: Record<string, number>;
}

export interface NodePlacement {
  /** Providers as requested, in order. */
  requested: string[];
  /** Nodes per provider, most first. */
  providers: ProviderShare[];
  /** Runs of consecutive nodes (in execution order) on one provider: 1 when one provider runs everything. */
  segments: number;
  /** Memcpy nodes ORT inserted to move tensors between host and device, per call. */
  copies: number;
}

const SHORT_NAMES: Record<string, string> = {
  CPUExecutionProvider: 'cpu',
  WebGpuExecutionProvider: 'webgpu',
  CUDAExecutionProvider: 'cuda',
  TensorrtExecutionProvider: 'tensorrt',
  DmlExecutionProvider: 'dml',
  CoreMLExecutionProvider: 'coreml',
};

interface ProfileEvent {
  cat?: string;
  name?: string;
  ts?: number;
  args?: { op_name?: string; provider?: string };
}

/** The placement recorded in an onnxruntime profile (the parsed JSON array). */
export function placementFromProfile(events: readonly unknown[], requested: readonly string[] = []): NodePlacement {
  const nodes = (events as ProfileEvent[])
    .filter((e) => e?.cat === 'Node' && typeof e.name === 'string' && e.name.endsWith('_kernel_time') && e.args?.provider)
    .sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
  const byProvider = new Map<string, ProviderShare>();
  let segments = 0;
  let copies = 0;
  let previous: string | undefined;
  for (const e of nodes) {
    const provider = SHORT_NAMES[e.args!.provider!] ?? e.args!.provider!;
    const op = e.args!.op_name ?? '?';
    const share = byProvider.get(provider) ?? { provider, nodes: 0, ops: {} };
    share.nodes += 1;
    share.ops[op] = (share.ops[op] ?? 0) + 1;
    byProvider.set(provider, share);
    if (op.startsWith('Memcpy')) copies += 1;
    if (provider !== previous) segments += 1;
    previous = provider;
  }
  return { requested: [...requested], providers: [...byProvider.values()].sort((a, b) => b.nodes - a.nodes), segments, copies };
}

/** One line for people: "webgpu 120 nodes (Conv 53, Relu 49, …); cpu 3 nodes (…); 3 segments, 2 copies". */
export function formatPlacement(p: NodePlacement, opsShown = 4): string {
  const shares = p.providers.map((s) => {
    const ops = Object.entries(s.ops).sort((a, b) => b[1] - a[1]);
    const shown = ops.slice(0, opsShown).map(([op, n]) => `${op} ${n}`);
    if (ops.length > opsShown) shown.push('…');
    return `${s.provider} ${s.nodes} node${s.nodes === 1 ? '' : 's'} (${shown.join(', ')})`;
  });
  return `${shares.join('; ') || 'no nodes recorded'}; ${p.segments} segment${p.segments === 1 ? '' : 's'}, ${p.copies} cop${p.copies === 1 ? 'y' : 'ies'}`;
}

export interface PlacementOptions {
  executionProviders: readonly ExecutionProvider[];
  graphOptimization?: ModelSpec['graphOptimization'];
  intraOpThreads?: number;
  numerics?: SessionNumerics;
}

/**
 * Open `path` on the providers (as a stage would: the same session settings), run one zero
 * input through it with ORT's profiler on, and read the placement from the profile. Throws
 * when the session cannot be created on these providers (no fallback here: the caller asked
 * about exactly this list).
 */
export async function nodePlacement(path: string, o: PlacementOptions): Promise<NodePlacement> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-placement-'));
  try {
    const session = await createSession(
      path,
      o.executionProviders,
      { graphOptimization: o.graphOptimization ?? 'all', intraOpThreads: o.intraOpThreads ?? 0, numerics: o.numerics },
      { enableProfiling: true, profileFilePrefix: join(dir, 'profile') },
    );
    try {
      const io = describeSession(session, path);
      const n = io.fixedBatch ?? 1;
      const size = n * io.channels * io.height * io.width;
      const data = io.inputDtype === 'float16' ? new Uint16Array(size) : new Float32Array(size);
      await session.run({ [io.inputName]: new ort.Tensor(io.inputDtype, data, [n, io.channels, io.height, io.width]) });
      session.endProfiling();
    } finally {
      await session.release();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (files.length === 0) throw new Error(`onnxruntime wrote no profile for ${path}`);
    const events = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as unknown[];
    return placementFromProfile(events, o.executionProviders);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
