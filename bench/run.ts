/**
 * `npm run bench [-- <name>...] [--images N] [--repeats N] [--threshold X] [--refs N] [--rss-images N] [--set key=value] [--skip-big-only]
 *   [--cost-images N] [--cost-small N] [--rounds N] [--cp-images N] [--cp-batches 32,128,512] [--cp-workers 1,2,4] [--cp-rounds N]
 *   [--merge-rows 100000,1000000] [--merge-batch N] [--merge-rounds N] [--window-refs 100000,1000000,10000000] [--window-whole-up-to N] [--window-drain-up-to N] [--window-shards N --window-shard-samples M] [--done-batches N]
 *   [--listing-keys N] [--listing-latency 0,50] [--listing-model-latency 50] [--listing-rounds N] [--listing-concurrency N] [--listing-splits N] [--listing-pages-ahead N]`
 * Runs the benchmarks (by default throughput, batching, enqueue, rss; `cost`, `control-plane`, `cluster-shards`, `merge`, `window`, `done-parts` and `s3-listing` only when named) and prints their tables.
 * Figures are medians and ratios from one invocation: the machine is shared, absolute numbers drift.
 */
import { parseArgs } from 'node:util';

// The AWS SDK's notice about its future Node floor would interleave with the tables.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { batchingBench } from './batching.js';
import { clusterShardsBench } from './cluster-shards.js';
import { controlPlaneBench } from './control-plane.js';
import { costBench } from './cost.js';
import { donePartsBench } from './done-parts.js';
import { enqueueBench } from './enqueue.js';
import { mergeBench } from './merge.js';
import { redisWindowBench, shardWindowBench } from './redis-window.js';
import { rssBench } from './rss.js';
import { rssCurve } from './rss-curve.js';
import { s3ListingBench } from './s3-listing.js';
import { DEFAULT_LISTING_SPLIT } from '../config/schema.js';
import { table } from './stats.js';
import { throughputBench } from './throughput.js';

const BENCHES = ['throughput', 'batching', 'enqueue', 'rss'] as const;
// Minutes each: run only when asked for by name.
const ON_REQUEST = ['cost', 'control-plane', 'cluster-shards', 'merge', 'window', 'done-parts', 's3-listing'] as const;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    images: { type: 'string', default: '717' },
    repeats: { type: 'string', default: '3' },
    threshold: { type: 'string', default: '0.5' },
    refs: { type: 'string', default: '1000000' },
    'rss-images': { type: 'string', default: '100000' },
    set: { type: 'string', multiple: true, default: [] },
    'skip-big-only': { type: 'boolean', default: false },
    'cost-images': { type: 'string', default: '200' },
    'cost-small': { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    'cp-images': { type: 'string', default: '4096' },
    'cp-batches': { type: 'string', default: '32,128,512' },
    'cp-workers': { type: 'string', default: '1,2,4' },
    'cp-rounds': { type: 'string', default: '2' },
    'cs-images': { type: 'string', default: '16384' },
    'cs-batch': { type: 'string', default: '128' },
    'cs-shards': { type: 'string', default: '1,3' },
    'cs-rounds': { type: 'string', default: '2' },
    'cs-concurrency': { type: 'string', default: '3' },
    'merge-rows': { type: 'string', default: '100000' },
    'merge-batch': { type: 'string', default: '128' },
    'merge-rounds': { type: 'string', default: '3' },
    'window-refs': { type: 'string', default: '100000,1000000' },
    'window-whole-up-to': { type: 'string', default: '1000000' },
    'window-drain-up-to': { type: 'string', default: '1000000' },
    'window-shards': { type: 'string', default: '' },
    'window-shard-samples': { type: 'string', default: '50' },
    'done-batches': { type: 'string', default: '1000000' },
    'listing-keys': { type: 'string', default: '50000' },
    'listing-latency': { type: 'string', default: '0,50' },
    'listing-model-latency': { type: 'string', default: '50' },
    'listing-rounds': { type: 'string', default: '3' },
    'listing-concurrency': { type: 'string', default: String(DEFAULT_LISTING_SPLIT.concurrency) },
    'listing-splits': { type: 'string', default: String(DEFAULT_LISTING_SPLIT.splits) },
    'listing-pages-ahead': { type: 'string', default: String(DEFAULT_LISTING_SPLIT.pagesAhead) },
  },
});

const chosen = positionals.length > 0 ? positionals : [...BENCHES];
for (const name of chosen)
  if (![...BENCHES, ...ON_REQUEST].includes(name as never))
    throw new Error(`unknown benchmark '${name}'; choose from ${[...BENCHES, ...ON_REQUEST].join(', ')}`);

/** `--set inferenceThreads=2` → { inferenceThreads: 2 }: pipeline config overrides. */
function overrides(pairs: string[]): Record<string, unknown> {
  return Object.fromEntries(
    pairs.map((p) => {
      const [k, v] = p.split('=');
      if (!k || v === undefined) throw new Error(`--set expects key=value, got '${p}'`);
      return [k, Number.isNaN(Number(v)) ? v : Number(v)];
    }),
  );
}

const log = (line: string) => console.log(line);
const num = (s: string | undefined, flag: string) => {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag} must be a positive number, got '${s}'`);
  return n;
};

if (chosen.includes('throughput')) {
  console.log('== throughput');
  await throughputBench({
    images: num(values.images, 'images'),
    repeats: num(values.repeats, 'repeats'),
    threshold: Number(values.threshold),
    config: overrides(values.set),
    skipBigOnly: values['skip-big-only'],
    log,
  });
  console.log('');
}
if (chosen.includes('batching')) {
  console.log('== batching');
  const r = await batchingBench(log);
  if (r) {
    console.log(
      table(
        [`mobilenetv2, jobs of ${r.jobImages} images`, 'images/s'],
        [
          ['one call per job', r.perJob],
          [`accumulated to batches of ${r.maxBatch}`, r.accumulated],
          ['ratio', r.accumulated / r.perJob],
        ],
      ),
    );
  }
  console.log('');
}
if (chosen.includes('enqueue')) {
  console.log('== enqueue');
  const r = await enqueueBench(num(values.refs, 'refs'));
  console.log(
    table(
      ['enqueue', 'value', 'goal'],
      [
        ['refs', r.refs, ''],
        ['seconds', r.seconds, '< 30 s for 1,000,000'],
        ['refs/s', r.refsPerSecond, ''],
        ['Redis bytes per in-flight image', r.bytesPerImage, '< 200'],
      ],
    ),
  );
  console.log('');
}
if (chosen.includes('rss')) {
  console.log('== rss');
  const r = await rssBench(num(values['rss-images'], 'rss-images'), log);
  console.log(table(['rss curve: seconds', 'images', 'images/s since last row', 'RSS MB'], rssCurve(r.samples, 12)));
  console.log('');
  console.log(
    table(
      ['rss', 'value', 'goal'],
      [
        ['images (distinct keys) / listed', `${r.images} / ${r.listed}`, 'equal'],
        ['seconds', r.seconds, ''],
        ['images/s', r.images / r.seconds, ''],
        ['RSS first / last sample, MB', `${r.samples[0]?.rssMb.toFixed(1)} / ${r.samples.at(-1)?.rssMb.toFixed(1)}`, ''],
        ['RSS peak sampled / kernel maxrss, MB', `${r.peakRssMb.toFixed(1)} / ${r.maxRssMb.toFixed(1)}`, ''],
        ['RSS slope over 2nd half, MB per 10k images', r.slopeMbPer10k, '≈ 0 (flat)'],
      ],
    ),
  );
  console.log('');
}
if (chosen.includes('cost')) {
  console.log('== cost');
  await costBench({
    images: num(values['cost-images'], 'cost-images'),
    small: num(values['cost-small'], 'cost-small'),
    rounds: num(values.rounds, 'rounds'),
    threshold: Number(values.threshold),
    log,
  });
}
if (chosen.includes('control-plane')) {
  console.log('== control-plane');
  const list = (s: string | undefined, flag: string) =>
    String(s)
      .split(',')
      .map((x) => num(x, flag));
  const r = await controlPlaneBench({
    images: num(values['cp-images'], 'cp-images'),
    batchSizes: list(values['cp-batches'], 'cp-batches'),
    workers: list(values['cp-workers'], 'cp-workers'),
    rounds: num(values['cp-rounds'], 'cp-rounds'),
    log,
  });
  console.log(`Redis idle (its own timers): ${r.idleCpuUsPerSecond.toFixed(0)} CPU-µs/s, subtracted for the net figure`);
  console.log(
    table(
      [
        'batch',
        'worker runtimes',
        'run s',
        'Redis CPU-µs/img',
        'net of idle',
        'in commands (wall) µs/img',
        'commands/img',
        'one Redis core saturates at (net), images/s',
      ],
      r.rows.map((x) => [
        String(x.batchSize),
        String(x.workers),
        x.seconds,
        x.cpuUsPerImage,
        x.netCpuUsPerImage,
        x.commandUsPerImage,
        x.callsPerImage,
        x.saturationImagesPerSecond,
      ]),
    ),
  );
  console.log('');
  console.log(
    table(
      ['batch', 'queued batches', 'Redis bytes per queued batch', 'per image'],
      r.memory.map((x) => [String(x.batchSize), String(x.batches), x.bytesPerBatch, x.bytesPerImage]),
    ),
  );
}
if (chosen.includes('cluster-shards')) {
  console.log('== cluster-shards');
  const r = await clusterShardsBench({
    images: num(values['cs-images'], 'cs-images'),
    batchSize: num(values['cs-batch'], 'cs-batch'),
    shards: String(values['cs-shards'])
      .split(',')
      .map((x) => num(x, 'cs-shards')),
    rounds: num(values['cs-rounds'], 'cs-rounds'),
    concurrency: num(values['cs-concurrency'], 'cs-concurrency'),
    log,
  });
  const three = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ');
  console.log('Per primary: the one holding the prefix (tracker hash, listing, merge queue) first, then the other two. Medians of the rounds.');
  console.log(
    table(
      [
        'queues.shards',
        'run s',
        'images/s',
        'worker CPU-s',
        'net Redis CPU-µs/img per primary',
        'commands/img per primary',
        'busiest primary saturates at, images/s',
      ],
      r.summary.map((x) => [
        String(x.shards),
        x.seconds,
        x.imagesPerSecond,
        x.workerCpuSeconds,
        three(x.netCpuUsPerImage),
        x.callsPerImage.map((c) => c.toFixed(3)).join(' / '),
        1e6 / Math.max(...x.netCpuUsPerImage),
      ]),
    ),
  );
  console.log('');
  console.log(
    table(
      ['queues.shards', 'queued images', 'Redis MB per 1M queued images, per primary'],
      r.memory.map((x) => [String(x.shards), String(x.images), three(x.mbPer1MImages)]),
    ),
  );
}
if (chosen.includes('merge')) {
  console.log('== merge');
  const rows = String(values['merge-rows'])
    .split(',')
    .map((x) => num(x, 'merge-rows'));
  const r = await mergeBench({ rows, batchSize: num(values['merge-batch'], 'merge-batch'), rounds: num(values['merge-rounds'], 'merge-rounds'), log });
  console.log(
    table(
      ['rows', 'manifest', 'merge s', 'CPU s', 'rows/s', 'manifest MB', 'shards'],
      r.map((x) => [String(x.rows), x.mode, x.seconds, x.cpuSeconds, x.rowsPerSecond, x.manifestMb, String(x.shards)]),
    ),
  );
}
if (chosen.includes('window')) {
  console.log('== window');
  const r = await redisWindowBench({
    sizes: String(values['window-refs'])
      .split(',')
      .map((x) => num(x, 'window-refs')),
    wholeUpTo: num(values['window-whole-up-to'], 'window-whole-up-to'),
    drainUpTo: num(values['window-drain-up-to'], 'window-drain-up-to'),
    log,
  });
  const mb = (x: number | null) => (x === null ? '-' : x.toFixed(1));
  console.log(
    table(
      ['refs', 'Redis MB after submit, window', 'all at once', 'submit s', 'drain: peak MB', 'end MB', 'images/s'],
      r.map((x) => [String(x.refs), mb(x.submitMb), mb(x.wholeSubmitMb), x.submitSeconds, mb(x.drainPeakMb), mb(x.drainEndMb), x.drainImagesPerSecond ?? '-']),
    ),
  );
  console.log('');
  if (values['window-shards']) {
    const shards = num(values['window-shards'], 'window-shards');
    const samples = num(values['window-shard-samples'], 'window-shard-samples');
    console.log(`== window: ${shards} tar shards of ${samples} samples`);
    const s = await shardWindowBench({ shards, samples, log });
    console.log(
      table(
        ['submit', 'images queued', 'batches', 'Redis MB after submit', 'submit s', 'CPU s'],
        s.map((x) => [x.how, String(x.images), String(x.batches), x.submitMb.toFixed(2), x.submitSeconds, x.cpuSeconds]),
      ),
    );
    console.log('');
  }
}
if (chosen.includes('done-parts')) {
  console.log('== done-parts');
  const r = await donePartsBench(num(values['done-batches'], 'done-batches'), log);
  console.log(
    table(
      ['batches', 'counted parts kept as', 'MEMORY USAGE MB', 'used_memory growth MB', 'bytes per batch', 'write s'],
      r.map((x) => [String(x.batches), x.structure, x.keyMb, x.usedMb, x.bytesPerBatch, x.seconds]),
    ),
  );
  console.log('');
}
if (chosen.includes('s3-listing')) {
  console.log('== s3-listing');
  const keys = num(values['listing-keys'], 'listing-keys');
  // Milliseconds added per request (s3rver) or page (model); an empty list skips that backend.
  const ms = (v: string | undefined) =>
    String(v ?? '')
      .split(',')
      .filter((x) => x !== '')
      .map((x) => Number(x));
  const split = {
    concurrency: num(values['listing-concurrency'], 'listing-concurrency'),
    splits: num(values['listing-splits'], 'listing-splits'),
    pagesAhead: num(values['listing-pages-ahead'], 'listing-pages-ahead'),
  };
  const r = await s3ListingBench({
    // Folders of under a page each with a key between each two; ten folders far larger than a range's read-ahead; no folders at all.
    layouts: [
      { name: 'small-folders', folders: Math.ceil(keys / 800), perFolder: 800, root: Math.ceil(keys / 800) },
      { name: 'big-folders', folders: 10, perFolder: Math.ceil(keys / 10), root: 0 },
      { name: 'flat', folders: 0, perFolder: 0, root: keys },
    ],
    s3rverLatencies: ms(values['listing-latency']),
    modelLatencies: ms(values['listing-model-latency']),
    rounds: num(values['listing-rounds'], 'listing-rounds'),
    split,
    log,
  });
  console.log(
    table(
      ['backend', 'layout', 'keys', '+ms/request', 'sequential keys/s', 'split keys/s', 'split speed-up', 'CPU s seq', 'CPU s split'],
      r.map((x) => [x.backend, x.layout, String(x.keys), String(x.latencyMs), x.sequentialKeysPerS, x.splitKeysPerS, x.speedup, x.sequentialCpuS, x.splitCpuS]),
    ),
  );
  console.log(`split: concurrency ${split.concurrency}, at most ${split.splits} splits, ${split.pagesAhead} pages ahead a range`);
  console.log('');
}
