/** Which S3 failures are transient (network, timeouts, 5xx, 429) and how they are retried within a time budget. */
import { describe, expect, it } from 'vitest';
import { ObjectNotFoundError } from '../../pipeline/storage/object-store.js';
import { retryTransient as retryWith } from '../../pipeline/storage/retry-transient.js';
import { isTransientS3Error } from '../../pipeline/storage/s3-store.js';

/** The retry loop with S3's notion of a transient failure, as S3Store and Stores.read use it. */
const retryTransient = <T>(op: () => Promise<T>, budgetMs: number) => retryWith(op, budgetMs, isTransientS3Error);

describe('transient S3 failures', () => {
  const refused = () =>
    new Error('Failed to read s3://b/k: connect ECONNREFUSED', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });

  it('classifies network errors, timeouts, 5xx and 429 as transient; 4xx and missing objects not', () => {
    expect(isTransientS3Error(refused())).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('slow down'), { $metadata: { httpStatusCode: 503 } }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('too many'), { $metadata: { httpStatusCode: 429 } }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('timeout'), { name: 'TimeoutError' }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('denied'), { $metadata: { httpStatusCode: 403 } }))).toBe(false);
    expect(isTransientS3Error(new ObjectNotFoundError('s3://b/k'))).toBe(false);
    expect(isTransientS3Error(new Error('bad key'))).toBe(false);
  });

  it('retries transient failures until success, gives up on permanent ones at once', async () => {
    let calls = 0;
    await expect(retryTransient(async () => (++calls < 3 ? Promise.reject(refused()) : 'ok'), 10_000)).resolves.toBe('ok');
    expect(calls).toBe(3);
    const failing = (err: () => Error) => {
      calls = 0;
      return async () => {
        calls++;
        throw err();
      };
    };
    await expect(
      retryTransient(
        failing(() => Object.assign(new Error('denied'), { $metadata: { httpStatusCode: 403 } })),
        10_000,
      ),
    ).rejects.toThrow('denied');
    expect(calls).toBe(1);
    // Out of budget: the transient error surfaces instead of another wait.
    await expect(retryTransient(failing(refused), 0)).rejects.toThrow(/ECONNREFUSED/);
    expect(calls).toBe(1);
  });
});
