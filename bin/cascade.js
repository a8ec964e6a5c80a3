#!/usr/bin/env node
// Runs the compiled CLI (npm ci / npm run build produce dist/).
// The AWS SDK warns on every start under Node 20 about a future Node 22 requirement; Cascade
// supports Node 20 today, so keep that notice off the user's terminal unless asked for.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { main } = await import('../dist/cli/main.js');
await main();
