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
    expect(cache.put('a', 'k', new Float32Array(4))).toBe(true);
    expect(cache.put('b', 'k', new Float32Array(4))).toBe(true);
    expect(cache.put('c', 'k', new Float32Array(4))).toBe(false);
    expect(cache.take('a', 'k')).toBeDefined();
    expect(cache.put('c', 'k', new Float32Array(4))).toBe(true);
  });

  it('drops entries older than maxAgeMs to make room', () => {
    let now = 0;
    const cache = new TensorCache(2 * 4 * 4, 1000, () => now);
    cache.put('a', 'k', new Float32Array(4));
    now = 500;
    cache.put('b', 'k', new Float32Array(4));
    now = 1200;
    expect(cache.put('c', 'k', new Float32Array(4))).toBe(true);
    expect(cache.take('a', 'k')).toBeUndefined();
    expect(cache.take('b', 'k')).toBeDefined();
    expect(cache.take('c', 'k')).toBeDefined();
  });
});
