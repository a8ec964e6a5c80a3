import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start redis-server, s3rver and worker threads: keep files in one fork each.
    pool: 'forks',
    reporters: ['default'],
    // The AWS SDK warns in every process on Node 20 about its future Node 22 floor; noise in test logs.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
