/**
 * A prefix's listing cut into key ranges listed concurrently, yielded in the flat listing's order.
 *
 * The ranges are bounded by split keys (common prefixes found with a delimiter listing): split
 * keys b1 < b2 < … < bn cut the keys under the prefix into (−∞, b1], (b1, b2], …, (bn, +∞). Every
 * key falls in exactly one range whatever the splits are, so keys directly under the prefix that
 * sort between folders (`a.jpg` < `a/x.jpg` < `a0.jpg`) need no special case, and a stale split
 * list (stored with a cursor, the prefix changed since) is still a partition: only its balance
 * suffers. Range i is listed as `store.list(prefix, {after: b_i})` and stops at its first key
 * past b_{i+1}: each range costs at most one page more than its keys.
 *
 * Ranges are listed `concurrency` at a time, in order, each holding at most `aheadKeys` keys not
 * yet yielded: memory stays bounded, and a range larger than that lists at the sequential rate
 * once its read-ahead is full (docs/performance.md).
 */
import { compareKeys, type ObjectInfo, type ObjectStore } from './object-store.js';

/** How a split listing runs. */
export interface SplitListingOptions {
  /** Ranges listed at once (≥ 1). */
  concurrency: number;
  /** Keys a range may hold ahead of the consumer before its listing waits. */
  aheadKeys: number;
}

/** How splits are discovered. */
export interface SplitDiscoveryOptions {
  /** Keep at most this many splits (evenly chosen when more were found). */
  splits: number;
  /** Read the next level down only while fewer splits than this were found (default: `splits`). */
  enough?: number;
  /** Folder levels read at most below the prefix. */
  maxDepth?: number;
  /** Delimiter listings sent at once. */
  concurrency?: number;
  /** Pages of the prefix's own delimiter listing read at most (a level full of keys but few folders is not read whole); default 10. */
  maxPages?: number;
  /** Pages of each deeper level's delimiter listing read at most; default 1. */
  maxPagesBelow?: number;
}

/** A store that can list the common prefixes one level below a prefix (ObjectStore.listPrefixes). */
export type SplittableStore = ObjectStore & Required<Pick<ObjectStore, 'listPrefixes'>>;

/** Whether `store` can discover splits (and lists `after` a key without reading the keys before it). */
export function canSplit(store: ObjectStore): store is SplittableStore {
  return typeof store.listPrefixes === 'function';
}

/**
 * The split keys of `prefix`: the common prefixes of its first level, and of deeper levels while
 * there are fewer than `enough` (up to `maxDepth` levels), in key byte order, at most `splits`
 * of them (evenly chosen when more were found).
 */
export async function discoverSplits(store: SplittableStore, prefix: string, opts: SplitDiscoveryOptions): Promise<string[]> {
  const maxDepth = opts.maxDepth ?? 3;
  const found: string[] = [];
  let level = [prefix];
  const enough = Math.min(opts.enough ?? opts.splits, opts.splits);
  for (let depth = 0; depth < maxDepth && level.length > 0 && found.length < enough; depth++) {
    let below: string[][];
    if (depth === 0) {
      // The first level bounds the ranges the deeper ones refine, so it is read further than
      // them, once its first page showed folders: a flat prefix costs one request, not ten.
      const first = await store.listPrefixes(prefix, { maxPages: 1 });
      if (first.length === 0) break;
      const maxPages = opts.maxPages ?? 10;
      below = [maxPages > 1 ? await store.listPrefixes(prefix, { maxPages }) : first];
    } else {
      below = await mapLimited(level, opts.concurrency ?? 8, (p) => store.listPrefixes(p, { maxPages: opts.maxPagesBelow ?? 1 }));
    }
    level = below.flat();
    found.push(...level);
  }
  found.sort(compareKeys);
  return evenly(found, opts.splits);
}

/** At most `n` of `sorted`, evenly spaced. */
function evenly(sorted: string[], n: number): string[] {
  if (sorted.length <= n) return sorted;
  return Array.from({ length: n }, (_, i) => sorted[Math.floor(((i + 1) * sorted.length) / (n + 1))]!);
}

/**
 * The keys under `prefix` after `after` (all when undefined), in key byte order, exactly as
 * `store.list(prefix, {after})` yields them, read as the ranges `splits` bound (see the module comment).
 */
export async function* listSplit(
  store: ObjectStore,
  prefix: string,
  splits: readonly string[],
  after: string | undefined,
  opts: SplitListingOptions,
): AsyncGenerator<ObjectInfo> {
  const ranges = rangesAfter(splits, after);
  const concurrency = Math.max(1, Math.floor(opts.concurrency));
  const started: RangeReader[] = [];
  const start = (i: number) => {
    const r = ranges[i];
    if (r) started[i] = new RangeReader(store, prefix, r.after, r.last, Math.max(1, opts.aheadKeys));
  };
  try {
    for (let i = 0; i < Math.min(concurrency, ranges.length); i++) start(i);
    for (let i = 0; i < ranges.length; i++) {
      const reader = started[i]!;
      for (;;) {
        const obj = await reader.next();
        if (obj === null) break;
        yield obj;
      }
      delete started[i];
      start(i + concurrency);
    }
  } finally {
    for (const reader of started) reader?.stop();
  }
}

/** One range: keys after `after` (all when undefined) up to and including `last` (no end when undefined). */
interface KeyRange {
  after: string | undefined;
  last: string | undefined;
}

/** The ranges the split keys cut the keys after `after` into (those wholly at or before it dropped). */
export function rangesAfter(splits: readonly string[], after: string | undefined): KeyRange[] {
  const bounds = [...new Set(splits)].sort(compareKeys);
  const ranges: KeyRange[] = [];
  let lower: string | undefined;
  for (const last of [...bounds, undefined]) {
    // A range holds keys past `after` only if its last key sorts after it.
    const live = after === undefined || last === undefined || compareKeys(last, after) > 0;
    if (live) {
      const from = after !== undefined && (lower === undefined || compareKeys(after, lower) > 0) ? after : lower;
      ranges.push({ after: from, last });
    }
    lower = last;
  }
  return ranges;
}

/** One range listed ahead of its consumer, at most `ahead` keys held. */
class RangeReader {
  private readonly buffer: ObjectInfo[] = [];
  private done = false;
  private failure: { err: unknown } | null = null;
  private stopped = false;
  // Who waits: the consumer for a key, the listing for room.
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;

  constructor(
    store: ObjectStore,
    prefix: string,
    after: string | undefined,
    private readonly last: string | undefined,
    private readonly ahead: number,
  ) {
    void this.run(store.list(prefix, after === undefined ? {} : { after })[Symbol.asyncIterator]());
  }

  /** The range's next key, null at its end; the listing's error is thrown here, in order. */
  async next(): Promise<ObjectInfo | null> {
    for (;;) {
      const obj = this.buffer.shift();
      if (obj) {
        this.wake('producer');
        return obj;
      }
      if (this.failure) throw this.failure.err;
      if (this.done) return null;
      await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
    }
  }

  /** Stop listing (the consumer went away). */
  stop(): void {
    this.stopped = true;
    this.wake('producer');
  }

  private async run(keys: AsyncIterator<ObjectInfo>): Promise<void> {
    try {
      for (;;) {
        while (this.buffer.length >= this.ahead && !this.stopped) await new Promise<void>((resolve) => (this.wakeProducer = resolve));
        if (this.stopped) break;
        const item = await keys.next();
        if (item.done) break;
        if (this.last !== undefined && compareKeys(item.value.key, this.last) > 0) break;
        this.buffer.push(item.value);
        this.wake('consumer');
      }
    } catch (err) {
      this.failure = { err };
    } finally {
      // Closed before the range is done: the next range starts only once this one's listing is released.
      await keys.return?.()?.catch(() => undefined);
      this.done = true;
      this.wake('consumer');
    }
  }

  private wake(who: 'consumer' | 'producer'): void {
    const w = who === 'consumer' ? this.wakeConsumer : this.wakeProducer;
    if (who === 'consumer') this.wakeConsumer = null;
    else this.wakeProducer = null;
    w?.();
  }
}

/** `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
