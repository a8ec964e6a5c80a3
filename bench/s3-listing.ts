/**
 * `npm run bench -- s3-listing`: keys per second listing a prefix, sequential (one page after
 * another) against split (pipeline/storage/split-listing.ts: folder ranges listed
 * `sources.listConcurrency` at a time), in interleaved rounds, on two backends:
 *
 * - s3rver (a child process, so this process is charged only for the client side), through
 *   listSourceFrom as a run lists, optionally with `latencyMs` added before every request (an S3
 *   client middleware). s3rver is no model of S3's costs: it answers each request by walking its
 *   directory tree and reading every listed key's metadata files on one core, and a delimiter
 *   listing walks every key below the prefix, so its answers cost CPU in proportion to keys, not
 *   a round trip.
 * - a latency model: the keys sorted in memory, listed a page of 1,000 at a time with `latencyMs`
 *   waited before every page and every delimiter listing, as S3's per-request round trip
 *   (~50–100 ms) would, and no other cost; discoverSplits/listSplit are what a run uses, the
 *   store is the model. It is not S3.
 *
 * The s3rver directory is written directly (one empty `<key>._S3rver_object` and its `.md5` per
 * key, s3rver 3.7's layout): uploading 100k objects through s3rver would take minutes.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ListingSplit } from '../config/schema.js';
import { compareKeys, type ListOptions, type ListPrefixesOptions, type ObjectStore } from '../pipeline/storage/object-store.js';
import { discoverSplits, listSplit } from '../pipeline/storage/split-listing.js';
import { Stores } from '../pipeline/storage/stores.js';
import { listSourceFrom } from '../producers/list-source.js';
import { startS3Process } from './s3rver-process.js';
import { median } from './stats.js';

const BUCKET = 'listing';
const EMPTY_MD5 = 'd41d8cd98f00b204e9800998ecf8427e';

/** One key layout under its own prefix: `folders` folders of `perFolder` keys, and `root` keys directly under the prefix. */
export interface ListingLayout {
  name: string;
  folders: number;
  perFolder: number;
  root: number;
}

export interface ListingRow {
  backend: 's3rver' | 'model';
  layout: string;
  keys: number;
  latencyMs: number;
  sequentialKeysPerS: number;
  splitKeysPerS: number;
  /** Median of the rounds' split / sequential wall time ratios, inverted: > 1 means split is faster. */
  speedup: number;
  sequentialCpuS: number;
  splitCpuS: number;
}

/** The keys of `layout` under `<name>/`, in no particular order. */
function keysOf(layout: ListingLayout): string[] {
  const keys: string[] = [];
  const width = String(Math.max(layout.folders, layout.perFolder, layout.root)).length;
  const n = (i: number) => String(i).padStart(width, '0');
  for (let f = 0; f < layout.folders; f++) for (let k = 0; k < layout.perFolder; k++) keys.push(`${layout.name}/f${n(f)}/${n(k)}.jpg`);
  // Root keys sort among the folders (`f01_00005.jpg` right after the folder `f01/`); not `f01-…`, which s3rver lists out of S3's order.
  for (let r = 0; r < layout.root; r++) keys.push(`${layout.name}/f${n(r % Math.max(1, layout.folders))}_${n(r)}.jpg`);
  return keys;
}

/** Writes empty objects for `keys` into s3rver's directory layout under `bucketDir`. */
async function writeObjects(bucketDir: string, keys: string[]): Promise<void> {
  const dirs = new Set(keys.map((k) => path.dirname(path.join(bucketDir, k))));
  for (const d of dirs) await fs.mkdir(d, { recursive: true });
  for (let i = 0; i < keys.length; i += 256) {
    await Promise.all(
      keys.slice(i, i + 256).map(async (k) => {
        const file = path.join(bucketDir, `${k}._S3rver_object`);
        await fs.writeFile(file, '');
        await fs.writeFile(`${file}.md5`, EMPTY_MD5);
      }),
    );
  }
}

/**
 * The latency model's store: keys held sorted in memory (no disk, no parsing), listed a page of
 * `page` keys at a time with `ms` waited before each page and before each delimiter listing, as
 * S3's round trip per request. Only what listing needs; a bench model, not a store.
 */
function modelStore(keys: string[], ms: number, page = 1000): ObjectStore & Required<Pick<ObjectStore, 'listPrefixes'>> {
  const sorted = [...keys].sort(compareKeys);
  // The index of the first key sorting after `key` (binary search).
  const firstAfter = (key: string, orEqual: boolean) => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareKeys(sorted[mid]!, key);
      if (c < 0 || (c === 0 && !orEqual)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const unsupported = () => Promise.reject(new Error('the listing model only lists'));
  return {
    get: unsupported,
    getStream: unsupported,
    getRange: unsupported,
    put: unsupported,
    putIfAbsent: unsupported,
    putStream: unsupported,
    delete: unsupported,
    describe: () => 'listing model',
    async *list(prefix = '', opts: ListOptions = {}) {
      let i = Math.max(firstAfter(prefix, true), opts.after === undefined ? 0 : firstAfter(opts.after, false));
      for (let n = 0; i < sorted.length && sorted[i]!.startsWith(prefix); i++, n++) {
        if (n % page === 0) await sleep(ms);
        yield { key: sorted[i]!, size: 0 };
      }
    },
    async listPrefixes(prefix: string, opts: ListPrefixesOptions = {}) {
      await sleep(ms);
      const delimiter = opts.delimiter ?? '/';
      const found: string[] = [];
      for (let i = firstAfter(prefix, true); i < sorted.length && sorted[i]!.startsWith(prefix); ) {
        const cut = sorted[i]!.indexOf(delimiter, prefix.length);
        if (cut < 0) {
          i++;
          continue;
        }
        const common = sorted[i]!.slice(0, cut + delimiter.length);
        found.push(common);
        // Past every key under this common prefix: the next key that does not start with it.
        i = firstAfter(`${common}\u{10FFFF}`, false);
        while (i < sorted.length && sorted[i]!.startsWith(common)) i++;
      }
      return found;
    },
  };
}

/** Lists `<name>/` of the model store once, as listSourceFrom would (flat, or splits found then listed). */
async function listModel(store: ReturnType<typeof modelStore>, name: string, split: ListingSplit): Promise<{ keys: number; wallS: number; cpuS: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let keys = 0;
  const prefix = `${name}/`;
  const listing =
    split.concurrency > 1
      ? listSplit(store, prefix, await discoverSplits(store, prefix, { ...split, enough: 4 * split.concurrency }), undefined, {
          concurrency: split.concurrency,
          aheadKeys: split.pagesAhead * 1000,
        })
      : store.list(prefix);
  for await (const _ of listing) keys++;
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { keys, wallS, cpuS: (cpu.user + cpu.system) / 1e6 };
}

/** Delays every request of `client` by `ms` (the model of a network round trip). */
function withLatency(client: S3Client, ms: number): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      await sleep(ms);
      return next(args);
    },
    { step: 'initialize', name: 'benchLatency' },
  );
}

/** Lists `s3://listing/<name>/` once; the keys listed, wall and CPU seconds. */
async function listOnce(stores: Stores, name: string, split: ListingSplit): Promise<{ keys: number; wallS: number; cpuS: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let keys = 0;
  for await (const _ of listSourceFrom(`s3://${BUCKET}/${name}/`, { extensions: ['.jpg'], stores, split }, null)) keys++;
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { keys, wallS, cpuS: (cpu.user + cpu.system) / 1e6 };
}

/** Interleaved rounds of sequential and split listings of one layout; one row. */
async function compare(
  row: Pick<ListingRow, 'backend' | 'layout' | 'keys' | 'latencyMs'>,
  rounds: number,
  list: (split: ListingSplit) => Promise<{ keys: number; wallS: number; cpuS: number }>,
  split: ListingSplit,
  log: (line: string) => void,
): Promise<ListingRow> {
  const seq: Array<{ wallS: number; cpuS: number }> = [];
  const par: Array<{ wallS: number; cpuS: number }> = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so drift on the shared machine does not favour one.
    const order = r % 2 === 0 ? (['seq', 'par'] as const) : (['par', 'seq'] as const);
    const got: Record<string, { keys: number; wallS: number; cpuS: number }> = {};
    for (const mode of order) got[mode] = await list(mode === 'seq' ? SEQUENTIAL : split);
    for (const mode of order)
      if (got[mode]!.keys !== row.keys) throw new Error(`s3-listing: ${mode} listed ${got[mode]!.keys} keys of ${row.layout}, expected ${row.keys}`);
    seq.push(got.seq!);
    par.push(got.par!);
    ratios.push(got.seq!.wallS / got.par!.wallS);
    log(
      `s3-listing: ${row.backend} ${row.layout} +${row.latencyMs} ms round ${r + 1}: sequential ${got.seq!.wallS.toFixed(2)} s, split ${got.par!.wallS.toFixed(2)} s`,
    );
  }
  return {
    ...row,
    sequentialKeysPerS: row.keys / median(seq.map((x) => x.wallS)),
    splitKeysPerS: row.keys / median(par.map((x) => x.wallS)),
    speedup: median(ratios),
    sequentialCpuS: median(seq.map((x) => x.cpuS)),
    splitCpuS: median(par.map((x) => x.cpuS)),
  };
}

const SEQUENTIAL: ListingSplit = { concurrency: 1, splits: 1, pagesAhead: 1 };

/**
 * Sequential against split listing of each layout, `rounds` interleaved rounds each: on s3rver
 * with each of `s3rverLatencies` added per request, and on the latency model with each of `modelLatencies` per page.
 */
export async function s3ListingBench(o: {
  layouts: ListingLayout[];
  s3rverLatencies: number[];
  modelLatencies: number[];
  rounds: number;
  split: ListingSplit;
  log: (line: string) => void;
}): Promise<ListingRow[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-bench-listing-'));
  const size = (l: ListingLayout) => l.folders * l.perFolder + l.root;
  const rows: ListingRow[] = [];
  try {
    for (const layout of o.layouts) {
      const t0 = performance.now();
      const keys = keysOf(layout);
      if (o.s3rverLatencies.length) await writeObjects(path.join(dir, 's3rver', BUCKET), keys);
      o.log(`s3-listing: wrote ${layout.name} (${keys.length} keys) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    for (const latencyMs of o.modelLatencies) {
      for (const layout of o.layouts) {
        const store = modelStore(keysOf(layout), latencyMs);
        const row = { backend: 'model' as const, layout: layout.name, keys: size(layout), latencyMs };
        rows.push(await compare(row, o.rounds, (split) => listModel(store, layout.name, split), o.split, o.log));
      }
    }
    if (o.s3rverLatencies.length === 0) return rows;
    const s3 = await startS3Process([BUCKET], { directory: path.join(dir, 's3rver') });
    try {
      const stores = new Stores({}, { clients: { s3: s3.client } });
      for (const latencyMs of o.s3rverLatencies) {
        if (latencyMs > 0) withLatency(s3.client, latencyMs);
        try {
          for (const layout of o.layouts) {
            const row = { backend: 's3rver' as const, layout: layout.name, keys: size(layout), latencyMs };
            rows.push(await compare(row, o.rounds, (split) => listOnce(stores, layout.name, split), o.split, o.log));
          }
        } finally {
          if (latencyMs > 0) s3.client.middlewareStack.remove('benchLatency');
        }
      }
    } finally {
      await s3.stop();
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
  return rows;
}
