/**
 * `cascade models inspect`: what a model expects and costs, read from the model itself.
 */
import { readFile } from 'node:fs/promises';
import { loadModelSpec } from '../../config/load-config.js';
import { InferencePool } from '../../pipeline/inference/inference-pool.js';
import { countMacs } from '../../pipeline/onnx/macs.js';

/** Print a model's I/O contract, provider and MAC count. */
export async function inspectModelCommand(ref: string, o: { json?: boolean }): Promise<void> {
  const spec = await loadModelSpec(ref);
  const macs = countMacs(await readFile(spec.path));
  const pool = await InferencePool.open(spec.path, {
    executionProviders: ['cpu'],
    intraOpThreads: 1,
    threads: 1,
    output: spec.output,
    maxBatch: spec.maxBatch,
    graphOptimization: spec.graphOptimization,
  });
  await pool.close();
  const report = {
    path: spec.path,
    io: pool.io,
    provider: pool.provider,
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
