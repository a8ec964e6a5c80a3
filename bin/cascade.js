#!/usr/bin/env node
// Runs the compiled CLI (npm ci / npm run build produce dist/).
import { availableParallelism } from 'node:os';

// The AWS SDK warns on every start under Node 20 about a future Node 22 requirement; Cascade
// supports Node 20 today, so keep that notice off the user's terminal unless asked for.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// sharp decodes and file reads run on libuv's pool, 4 threads by default: on a big machine that
// caps decoding at 4 images at once. Size it from the cores before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism()));
const { main } = await import('../dist/cli/main.js');
await main();
