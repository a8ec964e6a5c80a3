/**
 * The test processes carry no variable that would point them at a real deployment
 * (test/helpers/isolate-env.ts, a vitest setup file): the config loaders, called the way tests
 * call them, find no Redis and no S3 endpoint in the environment. The same end to end, with the
 * variables set to decoys before vitest starts: integration/isolate-env.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { DEPLOYMENT_ENV, removeDeploymentEnv } from '../helpers/isolate-env.js';

const models = { little: '/models/little.onnx', big: '/models/big.onnx' };

describe('test environment isolation', () => {
  it('no test process sees REDIS_URL, an S3 endpoint, a region or AWS credentials', () => {
    expect(DEPLOYMENT_ENV.filter((name) => process.env[name] !== undefined)).toEqual([]);
  });

  it('loadConfig and loadWorkerConfig with the process environment take neither Redis nor S3 from it', async () => {
    const config = await loadConfig({ overrides: models });
    expect(config.redisUrl).toBeUndefined();
    expect(config.s3?.endpoint).toBeUndefined();
    // Everything as from an empty environment (the S3 region is the schema's default).
    expect(config).toEqual(await loadConfig({ overrides: models, env: {} }));
    const { config: worker } = await loadWorkerConfig();
    expect(worker.redisUrl).toBeUndefined();
    expect(worker).toEqual((await loadWorkerConfig({ env: {} })).config);
  });

  it('the same calls would take them from an environment that has them (what the setup file removes)', async () => {
    const env = { REDIS_URL: 'redis://deployment:6379', CASCADE_S3_ENDPOINT: 'https://s3.deployment', AWS_REGION: 'eu-west-1' };
    const config = await loadConfig({ overrides: models, env });
    expect(config.redisUrl).toBe('redis://deployment:6379');
    expect(config.s3).toMatchObject({ endpoint: 'https://s3.deployment', region: 'eu-west-1' });
    expect((await loadWorkerConfig({ env })).config.redisUrl).toBe('redis://deployment:6379');
  });

  it('removeDeploymentEnv removes exactly the listed variables and names them', () => {
    const env: NodeJS.ProcessEnv = { REDIS_URL: 'redis://x', AWS_ENDPOINT_URL: 'http://y', AWS_ACCESS_KEY_ID: 'k', CASCADE_ASSETS: '/assets', PATH: '/bin' };
    expect(removeDeploymentEnv(env)).toEqual(['REDIS_URL', 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID']);
    expect(env).toEqual({ CASCADE_ASSETS: '/assets', PATH: '/bin' });
  });
});
