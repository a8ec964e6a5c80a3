/**
 * `cascade models inspect`: what a model expects and costs, and where its nodes run on the
 * chosen execution providers, read from the model and one profiled call.
 */
import { readFile } from 'node:fs/promises';
import { loadModelSpec } from '../../config/load-config.js';
import { ConfigError } from '../../config/load-config.js';
import { ExecutionProvider } from '../../config/schema.js';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { formatPlacement, nodePlacement } from '../../pipeline/inference/node-placement.js';
import { countMacs } from '../../pipeline/onnx/macs.js';

/** The --providers list, validated. */
function providerList(flag: string | undefined): ExecutionProvider[] {
  const names = (flag ?? 'cpu')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const parsed = ExecutionProvider.array().min(1).safeParse(names);
  if (!parsed.success)
    throw new ConfigError(`--providers: expected a comma-separated list of ${ExecutionProvider.options.join(', ')} (got ${JSON.stringify(flag)})`);
  return parsed.data;
}

/** Why a model file could not be read, in words (the errno code stays for searching). */
const READ_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'a directory, not a model file',
  ENOTDIR: 'a folder on its path is a file',
};

/** The model file's MAC count; a file that cannot be read, or is no ONNX model, is one ConfigError line (exit 2). */
async function modelMacs(path: string): Promise<ReturnType<typeof countMacs>> {
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    const why = err.code && READ_ERRORS[err.code] ? `${READ_ERRORS[err.code]} (${err.code})` : err.message;
    throw new ConfigError(`cannot read model ${path}: ${why}`);
  });
  try {
    return countMacs(bytes);
  } catch (err) {
    throw new ConfigError(`${path} is not an ONNX model: ${(err as Error).message}`);
  }
}

/** Print a model's I/O contract, provider, node placement and MAC count. */
export async function inspectModelCommand(ref: string, o: { json?: boolean; providers?: string }): Promise<void> {
  const spec = await loadModelSpec(ref);
  const executionProviders = providerList(o.providers);
  const macs = await modelMacs(spec.path);
  const pool = await InferencePool.open(spec.path, {
    executionProviders,
    intraOpThreads: 1,
    threads: 1,
    output: spec.output,
    maxBatch: spec.maxBatch,
    graphOptimization: spec.graphOptimization,
  });
  await pool.close();
  // The providers the session opened on, from the first that loaded: where each node then runs.
  const placement = await nodePlacement(spec.path, {
    executionProviders: executionProviders.slice(executionProviders.indexOf(pool.provider)),
    graphOptimization: spec.graphOptimization,
    intraOpThreads: 1,
  });
  const report = {
    path: spec.path,
    io: pool.io,
    provider: pool.provider,
    placement,
    gmacs: macs.macs / 1e9,
    gmacsByOp: Object.fromEntries(Object.entries(macs.byOp).map(([k, v]) => [k, v / 1e9])),
    unresolved: macs.unresolved,
    preprocess: spec.preprocess,
  };
  if (o.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const { io } = pool;
  const lines = [
    `model    ${spec.path}`,
    `input    ${io.inputName} ${io.inputDtype} [${io.fixedBatch ?? 'N'}, ${io.channels}, ${io.height}, ${io.width}]${io.fixedBatch === null ? ' (batched)' : ''}`,
    `output   ${io.outputName}`,
    `nodes    ${formatPlacement(placement)}`,
    `compute  ${report.gmacs.toFixed(3)} GMACs per image${spec.gmacs !== undefined ? ` (spec says ${spec.gmacs})` : ''}`,
    ...Object.entries(report.gmacsByOp)
      .sort((a, b) => b[1] - a[1])
      .map(([op, g]) => `           ${op.padEnd(14)} ${g.toFixed(4)}`),
    `preproc  ${spec.preprocess.colorOrder}, scale ${spec.preprocess.scale.toPrecision(4)}, mean [${spec.preprocess.mean.join(', ')}], std [${spec.preprocess.std.join(', ')}]`,
  ];
  if (macs.unresolved.length)
    lines.push(`warning  ${macs.unresolved.length} node(s) with unknown shapes; MACs may be undercounted: ${macs.unresolved.slice(0, 5).join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
