/**
 * Split listing (pipeline/storage/split-listing.ts) over the local store, which lists in S3's
 * byte order (keys s3rver misorders: `a.jpg` < `a/x.jpg` < `a0.jpg`, `～` < an astral emoji):
 * the ranges cover every key once, come out in the flat listing's order even when later ranges
 * finish first, run concurrently, read ahead at most their bound, and stop when the consumer does.
 * S3 itself: test/integration/split-listing-s3.test.ts.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LISTING_SPLIT, listingSplitOf, SourceSettings } from '../../config/schema.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { submissionSource } from '../../producers/inputs/input-formats.js';
import { compareKeys, type ListOptions, type ObjectInfo, type ObjectStore } from '../../pipeline/storage/object-store.js';
import { canSplit, discoverSplits, listSplit, rangesAfter } from '../../pipeline/storage/split-listing.js';

const KEYS = [
  ' space.jpg',
  'a-b.jpg',
  'a.jpg',
  'a/x.jpg',
  'a/y/1.jpg',
  'a/y/2.jpg',
  'a/y/3.jpg',
  'a/z.jpg',
  'a0.jpg',
  'b.jpg',
  'b/1.jpg',
  'b/2.jpg',
  'c d/e f.jpg',
  'deep/1/2/3.jpg',
  'deep/1/4.jpg',
  ...Array.from({ length: 12 }, (_, i) => `n/${String(i).padStart(3, '0')}.jpg`),
  'é.jpg',
  '日本/1.jpg',
  '～.jpg',
  '😀.jpg',
  '😀/1.jpg',
].map((k) => `p/${k}`);

let tmp: string;
let store: LocalStore;

async function keysOf(it: AsyncIterable<ObjectInfo>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

/**
 * The local store with each listing slowed: `delayOf(after)` ms before every `page` keys, like an
 * S3 page's round trip (a wrapper, not a mock: the keys come from the real store). It counts the
 * listings in flight at once and the keys pulled from the store.
 */
function slowStore(inner: ObjectStore, page: number, delayOf: (after: string | undefined) => number) {
  const stats = { inFlight: 0, maxInFlight: 0, pulled: 0, closed: 0 };
  const store: ObjectStore = Object.create(inner) as ObjectStore;
  store.list = async function* (prefix?: string, opts: ListOptions = {}) {
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    try {
      let n = 0;
      for await (const obj of inner.list(prefix, opts)) {
        if (n++ % page === 0) await sleep(delayOf(opts.after));
        stats.pulled++;
        yield obj;
      }
    } finally {
      stats.inFlight--;
      stats.closed++;
    }
  };
  store.listPrefixes = (prefix, opts) => inner.listPrefixes!(prefix, opts);
  return { store, stats };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-split-test-'));
  for (const key of [...KEYS, 'p0.jpg', 'q/1.jpg']) {
    await fs.mkdir(path.dirname(path.join(tmp, key)), { recursive: true });
    await fs.writeFile(path.join(tmp, key), key);
  }
  store = new LocalStore(tmp);
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('split listing', () => {
  it('finds folders two levels down as split keys, and lists exactly the flat listing from every resume point', async () => {
    expect(canSplit(store)).toBe(true);
    const flat = await keysOf(store.list('p/'));
    expect(flat).toEqual([...KEYS].sort(compareKeys));
    const splits = await discoverSplits(store, 'p/', { splits: 100 });
    expect(splits).toEqual(['p/a/', 'p/a/y/', 'p/b/', 'p/c d/', 'p/deep/', 'p/deep/1/', 'p/deep/1/2/', 'p/n/', 'p/日本/', 'p/😀/']);
    // A level with no folder on its first page is not read further: one request, no splits.
    const calls: string[] = [];
    const counting = Object.create(store) as LocalStore;
    counting.listPrefixes = (prefix, opts) => {
      calls.push(prefix);
      return store.listPrefixes(prefix, opts);
    };
    expect(await discoverSplits(counting, 'q/', { splits: 100 })).toEqual([]);
    expect(calls).toEqual(['q/']);
    // Enough found at the first level: none below is read.
    calls.length = 0;
    expect(await discoverSplits(counting, 'p/', { splits: 100, enough: 5, maxPages: 1 })).toEqual([
      'p/a/',
      'p/b/',
      'p/c d/',
      'p/deep/',
      'p/n/',
      'p/日本/',
      'p/😀/',
    ]);
    expect(calls).toEqual(['p/']);
    // At most `splits`, evenly chosen, still in order.
    const few = await discoverSplits(store, 'p/', { splits: 3 });
    expect(few).toHaveLength(3);
    expect([...few].sort(compareKeys)).toEqual(few);
    for (const s of [splits, few, []]) {
      for (const concurrency of [1, 3, 16]) {
        expect(await keysOf(listSplit(store, 'p/', s, undefined, { concurrency, aheadKeys: 2 })), `${s.length} splits × ${concurrency}`).toEqual(flat);
        for (let i = 0; i < flat.length; i++) {
          expect(await keysOf(listSplit(store, 'p/', s, flat[i], { concurrency, aheadKeys: 2 }))).toEqual(flat.slice(i + 1));
        }
      }
    }
  });

  it('cuts the keys into ranges (b_i, b_i+1] that start at a resume point inside them and drop those before it', () => {
    expect(rangesAfter(['b/', 'a/'], undefined)).toEqual([
      { after: undefined, last: 'a/' },
      { after: 'a/', last: 'b/' },
      { after: 'b/', last: undefined },
    ]);
    expect(rangesAfter(['a/', 'b/'], 'a/x')).toEqual([
      { after: 'a/x', last: 'b/' },
      { after: 'b/', last: undefined },
    ]);
    // A resume point on a split key: the range it ends is done.
    expect(rangesAfter(['a/', 'b/', 'b/'], 'b/')).toEqual([{ after: 'b/', last: undefined }]);
    expect(rangesAfter([], 'x')).toEqual([{ after: 'x', last: undefined }]);
  });

  it('yields in order when later ranges finish first, with ranges listed concurrently', async () => {
    const flat = await keysOf(store.list('p/'));
    const splits = await discoverSplits(store, 'p/', { splits: 100 });
    // The first ranges are the slowest: a listing that yielded ranges as they finish would be out of order.
    const { store: slow, stats } = slowStore(store, 2, (after) => (after === undefined ? 40 : after < 'p/c' ? 20 : 1));
    expect(await keysOf(listSplit(slow, 'p/', splits, undefined, { concurrency: 4, aheadKeys: 3 }))).toEqual(flat);
    expect(stats.maxInFlight).toBe(4);
    expect(stats.inFlight).toBe(0);
  });

  it('reads ahead at most its bound per range, and stops every range when the consumer stops', async () => {
    const splits = await discoverSplits(store, 'p/', { splits: 100 });
    const { store: slow, stats } = slowStore(store, 1, () => 1);
    const it = listSplit(slow, 'p/', splits, undefined, { concurrency: 4, aheadKeys: 2 })[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ key: 'p/ space.jpg' });
    await sleep(100);
    // Four ranges, each holding at most two keys and one key past its end that stopped it.
    expect(stats.pulled).toBeLessThanOrEqual(4 * (2 + 1));
    expect(stats.pulled).toBeGreaterThan(3);
    await it.return?.(undefined);
    await sleep(50);
    expect(stats.inFlight).toBe(0);
    expect(stats.closed).toBe(4);
  });

  it('throws a range’s listing error in its place in the order, after the keys before it', async () => {
    const flat = await keysOf(store.list('p/'));
    const failing: ObjectStore = Object.create(store) as ObjectStore;
    failing.list = async function* (prefix?: string, opts: ListOptions = {}) {
      if (opts.after === 'p/b/') throw new Error('listing failed');
      yield* store.list(prefix, opts);
    };
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const o of listSplit(failing, 'p/', ['p/a/', 'p/b/'], undefined, { concurrency: 3, aheadKeys: 100 })) seen.push(o.key);
      })(),
    ).rejects.toThrow('listing failed');
    expect(seen).toEqual(flat.filter((k) => compareKeys(k, 'p/b/') <= 0));
  });
});

describe('listing settings', () => {
  it('come from sources.list* (defaults filled in), are refused out of range, and travel in a loose source’s listing plan', async () => {
    expect(listingSplitOf({})).toEqual(DEFAULT_LISTING_SPLIT);
    const split = listingSplitOf(SourceSettings.parse({ listConcurrency: 2, listPagesAhead: 16 }));
    expect(split).toEqual({ concurrency: 2, splits: DEFAULT_LISTING_SPLIT.splits, pagesAhead: 16 });
    expect(SourceSettings.safeParse({ listConcurrency: 0 }).success).toBe(false);
    expect(SourceSettings.safeParse({ listSplits: 1.5 }).success).toBe(false);
    const source = submissionSource('s3://bucket/photos/', { extensions: ['.jpg'], split, stores: new Stores(), onDuplicate: () => {} });
    expect('plan' in source && source.plan).toEqual({ source: 's3://bucket/photos/', extensions: ['.jpg'], split });
  });
});
