/**
 * A process that exits while a session run is in flight on its inference thread, for the
 * exit-now tests: `node --import tsx <this file> <model> <exit-now|process-exit>`. The moment is
 * measured, not guessed: one batch is timed first, and the exit comes halfway through the second.
 * `exit-now` exits through cli/exit-now.ts (exit 1 expected); `process-exit` calls process.exit(1)
 * there, which aborts natively (exit 134, 'terminate called … Napi::Error').
 */
import { exitNow } from '../../cli/exit-now.js';
import { InferencePool, type PoolOptions } from '../../pipeline/inference/inference-pool.js';

const [model, how] = process.argv.slice(2) as [string, 'exit-now' | 'process-exit'];
const options: PoolOptions = { threads: 1, executionProviders: ['cpu'], intraOpThreads: 1, output: 'auto', maxBatch: 16, graphOptimization: 'all' };
const batch = () => new Float32Array(16 * 3 * 8 * 8);

const pool = await InferencePool.open(model, options);
const started = performance.now();
await pool.infer(batch(), 16);
const ms = performance.now() - started;
void pool.infer(batch(), 16);
await new Promise((r) => setTimeout(r, ms / 2));
process.stderr.write(`exiting during a run (${InferencePool.tasksInFlight()} on the threads, ${Math.round(ms)} ms each)\n`);
if (how === 'exit-now') await exitNow(1);
else process.exit(1);
