import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start redis-server, s3rver and worker threads: keep files in one fork each.
    pool: 'forks',
    reporters: ['default'],
  },
});
