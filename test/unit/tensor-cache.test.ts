/** The tensor cache on its own: one take per entry, keyed by preprocessing, bounded by bytes and age. */
import { describe, expect, it } from 'vitest';
import { TensorCache } from '../../pipeline/image/tensor-cache.js';

describe('TensorCache', () => {
  it('gives a tensor back once, only for the same preprocessing', () => {
    const cache = new TensorCache(1024);
    const t = new Float32Array([1, 2, 3]);
    expect(cache.put('a.png', 'torch-224', t)).toBe(true);
    expect(cache.take('a.png', 'caffe-224')).toBeUndefined();
    expect(cache.take('a.png', 'torch-224')).toBe(t);
    expect(cache.take('a.png', 'torch-224')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect([cache.hits, cache.misses]).toEqual([1, 2]);
  });

  it('refuses new entries when full instead of evicting the oldest, which are used first', () => {
    const cache = new TensorCache(2 * 4 * 4);
    const [a, b, c] = [1, 2, 3].map((v) => new Float32Array(4).fill(v)) as [Float32Array, Float32Array, Float32Array];
    expect(cache.put('a', 'k', a)).toBe(true);
    expect(cache.put('b', 'k', b)).toBe(true);
    expect(cache.put('c', 'k', c)).toBe(false);
    expect(cache.take('a', 'k')).toBe(a);
    expect(cache.put('c', 'k', c)).toBe(true);
    expect([cache.take('b', 'k'), cache.take('c', 'k')]).toEqual([b, c]);
  });

  it('drops entries older than maxAgeMs to make room', () => {
    let now = 0;
    const cache = new TensorCache(2 * 4 * 4, 1000, () => now);
    const [a, b, c] = [1, 2, 3].map((v) => new Float32Array(4).fill(v)) as [Float32Array, Float32Array, Float32Array];
    cache.put('a', 'k', a);
    now = 500;
    cache.put('b', 'k', b);
    now = 1200;
    expect(cache.put('c', 'k', c)).toBe(true);
    expect(cache.take('a', 'k')).toBeUndefined();
    expect(cache.take('b', 'k')).toBe(b);
    expect(cache.take('c', 'k')).toBe(c);
  });
});
