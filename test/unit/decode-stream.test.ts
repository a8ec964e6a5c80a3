/**
 * The decode stream on its own: tensors for good images, a failure (not a rejection) for the
 * rest, the tensor cache, bounded concurrency, both yield orders, and reading ahead that stops
 * when the consumer pauses.
 */
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { PreprocessSpec } from '../../config/schema.js';
import { imageErrorKind } from '../../pipeline/classify-batch.js';
import { boundedMap, decodeStream, type BatchItem, type Decoded, type Ready, type Unreadable } from '../../pipeline/image/decode-stream.js';
import { preprocessKey, TensorCache } from '../../pipeline/image/tensor-cache.js';
import { ObjectNotFoundError } from '../../pipeline/storage/object-store.js';

const preprocess = PreprocessSpec.parse({ resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' });
const shape = { height: 8, width: 8, dtype: 'float32' as const };
const files = new Map<string, Buffer>();

beforeAll(async () => {
  files.set(
    'red.png',
    await sharp({ create: { width: 12, height: 10, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .png()
      .toBuffer(),
  );
  files.set(
    'grey.png',
    await sharp({ create: { width: 10, height: 10, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .png()
      .toBuffer(),
  );
  files.set('junk.png', Buffer.from('not an image'));
});

const fetchFile = async (ref: string) => {
  const bytes = files.get(ref);
  if (!bytes) throw new ObjectNotFoundError(ref);
  return bytes;
};
const items = (...refs: string[]): BatchItem[] => refs.map((ref, pos) => ({ ref, pos }));

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const byPos = (ds: Decoded[]) => [...ds].sort((a, b) => a.item.pos - b.item.pos);

describe('decodeStream', () => {
  it('yields tensors for good images and a failure for a missing or undecodable one', async () => {
    const out = byPos(
      await collect(
        decodeStream(items('red.png', 'missing.png', 'junk.png', 'grey.png'), preprocess, shape, { fetch: fetchFile, maxPixels: 1e6, fetchConcurrency: 2 }),
      ),
    );
    expect(out.map((d) => d.ok)).toEqual([true, false, false, true]);
    const [red, missing, junk] = out as [Ready, Unreadable, Unreadable];
    expect(red.tensor.length).toBe(3 * 8 * 8);
    expect([red.tensor[0], red.tensor[64], red.tensor[128]]).toEqual([1, 0, 0]);
    expect(imageErrorKind(missing.err)).toBe('not-found');
    expect(imageErrorKind(junk.err)).toBe('decode');
  });

  it('takes a cached tensor instead of fetching, at no fetch or decode time', async () => {
    const cache = new TensorCache(1 << 20);
    const kept = new Float32Array(3 * 8 * 8).fill(0.5);
    cache.put('gone.png', preprocessKey(preprocess, shape), kept);
    const fetched: string[] = [];
    const fetch = (ref: string) => {
      fetched.push(ref);
      return fetchFile(ref);
    };
    const [d] = await collect(decodeStream(items('gone.png'), preprocess, shape, { fetch, maxPixels: 1e6, fetchConcurrency: 1, tensorCache: cache }));
    expect(d).toMatchObject({ ok: true, tensor: kept, fetchMs: 0, decodeMs: 0 });
    expect(fetched).toEqual([]);
  });

  it('fetches at most fetchConcurrency images at once', async () => {
    let now = 0;
    let most = 0;
    const fetch = async (ref: string) => {
      most = Math.max(most, ++now);
      await new Promise((r) => setTimeout(r, 5));
      now--;
      return fetchFile(ref);
    };
    const out = await collect(decodeStream(items(...Array<string>(9).fill('grey.png')), preprocess, shape, { fetch, maxPixels: 1e6, fetchConcurrency: 3 }));
    expect(out.filter((d) => d.ok)).toHaveLength(9);
    expect(most).toBe(3);
  });
});

describe('boundedMap', () => {
  // Later inputs finish first.
  const slowFirst = (n: number) => new Promise<number>((r) => setTimeout(() => r(n), 40 - 10 * n));

  it("'ready' yields as each finishes, 'input' in input order", async () => {
    expect(await collect(boundedMap([0, 1, 2, 3], 4, slowFirst, 'ready'))).toEqual([3, 2, 1, 0]);
    expect(await collect(boundedMap([0, 1, 2, 3], 4, slowFirst, 'input'))).toEqual([0, 1, 2, 3]);
  });

  it('stops reading ahead while the consumer pauses', async () => {
    const started: number[] = [];
    const gen = boundedMap(
      [0, 1, 2, 3, 4, 5, 6, 7],
      2,
      async (n) => {
        started.push(n);
        return n;
      },
      'input',
    );
    expect((await gen.next()).value).toBe(0);
    await new Promise((r) => setTimeout(r, 20));
    // Two slots: one result waiting to be taken, one running or waiting too.
    expect(started).toEqual([0, 1, 2]);
    expect(await collect(gen)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('passes a rejection on when its result is reached', async () => {
    const gen = boundedMap([0, 1], 2, async (n) => (n === 1 ? Promise.reject(new Error('boom')) : n), 'input');
    expect((await gen.next()).value).toBe(0);
    await expect(gen.next()).rejects.toThrow('boom');
  });
});
