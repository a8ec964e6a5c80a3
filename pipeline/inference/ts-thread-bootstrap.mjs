// Lets a worker thread load a TypeScript entry when Cascade runs from source (vitest, tsx).
// The compiled build never uses this file: its thread entries are plain .js.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const entry = await import(workerData.__tsEntry);
export default entry.default;
