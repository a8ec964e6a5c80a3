import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Which files: the two projects below (an `include` here would be added to each of theirs).
    // Removes REDIS_URL, the S3 endpoint/region variables and AWS credentials from every test
    // process, so no test (nor a process it spawns) can reach a real deployment: see the file.
    setupFiles: ['test/helpers/isolate-env.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start redis-server, s3rver and worker threads: keep files in one fork each.
    pool: 'forks',
    reporters: ['default'],
    // The AWS SDK warns in every process on Node 20 about its future Node 22 floor; noise in test logs.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    projects: [
      {
        extends: true,
        test: {
          // test/unit: no redis-server, s3rver, child processes or ../shared assets (`npm run
          // test:unit`). Their files run one after another in one fork that keeps its loaded
          // modules: a fresh fork per file spent most of its time loading them again.
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          isolate: false,
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        extends: true,
        test: {
          // test/integration: real redis-server, s3rver and processes; test/real: the real models.
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/unit/**'],
        },
      },
    ],
  },
});
