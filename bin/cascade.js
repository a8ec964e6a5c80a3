#!/usr/bin/env node
// Runs the compiled CLI (npm ci / npm run build produce dist/).
import { main } from '../dist/cli/main.js';

await main();
