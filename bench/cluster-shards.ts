/**
 * Queue shards over several Redis primaries: a throwaway 3-primary cluster on loopback
 * (test/helpers/redis-cluster.ts), the tiny generated models, N distinct 32×32 images
 * (bench/distinct-keys.ts), and two `cascade worker little big [merge]` processes of the built CLI
 * per run. For `queues.shards` 1 and 3, in interleaved rounds (the order flips each round): one
 * whole run, measured from each primary's own INFO (CPU net of its idle timers, commands by
 * commandstats) and the worker processes' CPU from /proc. Each run's prefix is chosen so that its
 * 3 shards of each stage fall on the 3 different primaries; the primary holding the prefix's own
 * slot also carries the run's tracker hash, its listing and the merge queue, which do not spread,
 * so its excess over the other two is that share. Memory: submit with no workers, used_memory
 * growth per primary.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { loadConfig } from '../config/load-config.js';
import { listSource } from '../producers/list-source.js';
import { planRun } from '../producers/plan-run.js';
import { submitRun } from '../producers/submit-run.js';
import { stageQueuePlace } from '../queue/queue-shards.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { type CliProcess, spawnCascade } from '../test/helpers/cli-process.js';
import { startRedisCluster, type TestRedisCluster } from '../test/helpers/redis-cluster.js';
import { writeTestModels } from '../test/helpers/test-models.js';
import { startRuntime } from '../workers/cascade-runtime.js';
import { callsByKind, commandCalls, parseRedisInfo } from './control-plane.js';
import { distinctKeys } from './distinct-keys.js';
import { median } from './stats.js';

const IDLE_SAMPLE_MS = 3000;
/** Batches queued for the memory figure. */
const MEMORY_BATCHES = 64;

export interface ClusterShardsOptions {
  images: number;
  batchSize: number;
  shards: number[];
  rounds: number;
  /** Jobs per stage per worker process (split over its shards). */
  concurrency: number;
  log: (line: string) => void;
}

/** One run's figures, per primary in the cluster's order. */
export interface ClusterRunRow {
  shards: number;
  round: number;
  seconds: number;
  imagesPerSecond: number;
  /** The worker processes' CPU seconds (user + system), both together. */
  workerCpuSeconds: number;
  /** Per primary: Redis CPU-µs per image, net of its idle timers. */
  netCpuUsPerImage: number[];
  /** Per primary: commands per image. */
  callsPerImage: number[];
  /** Which primary holds the prefix's slot (the run's tracker hash, listing and merge queue). */
  prefixNode: number;
  /** Commands per image by kind on the prefix's primary, then on another one (`evalsha 0.12, …`). */
  byKind: [string, string];
}

export interface ClusterMemoryRow {
  shards: number;
  images: number;
  /** Per primary: used_memory growth scaled to 1M queued images, in MB. */
  mbPer1MImages: number[];
}

export interface ClusterShardsResult {
  /** Per primary: CPU-µs/s with no clients but the bench's (its timers). */
  idleCpuUsPerSecond: number[];
  runs: ClusterRunRow[];
  /** Medians over rounds per shard count. */
  summary: Array<Omit<ClusterRunRow, 'round'>>;
  memory: ClusterMemoryRow[];
}

/** The cluster's primaries by port, each with its own connection and slot ranges. */
interface Primary {
  port: number;
  redis: Redis;
  slots: Array<[number, number]>;
}

async function primaries(cluster: TestRedisCluster): Promise<Primary[]> {
  const nodes = cluster.ports.map((port) => ({
    port,
    redis: new Redis({ host: '127.0.0.1', port, lazyConnect: false }),
    slots: [] as Array<[number, number]>,
  }));
  const ranges = (await nodes[0]!.redis.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
  for (const [from, to, [, port]] of ranges) nodes.find((n) => n.port === port)?.slots.push([from, to]);
  return nodes;
}

/** The index of the primary serving `key`'s slot. */
async function nodeOf(nodes: Primary[], key: string): Promise<number> {
  const slot = Number(await nodes[0]!.redis.call('CLUSTER', 'KEYSLOT', key));
  return nodes.findIndex((n) => n.slots.some(([a, b]) => slot >= a && slot <= b));
}

/**
 * A hash-tagged prefix, starting the search at `from`, whose 3 shards of each stage land on 3
 * different primaries (so every primary carries the same queue share); its primary, and the next `from`.
 */
async function evenPrefix(nodes: Primary[], from: number): Promise<{ prefix: string; node: number; next: number }> {
  for (let i = from; ; i++) {
    const prefix = `{cs${i}}`;
    let even = true;
    for (const stage of ['little', 'big']) {
      const places = await Promise.all([0, 1, 2].map((k) => nodeOf(nodes, stageQueuePlace(prefix, stage, k, 3).name)));
      if (new Set(places).size !== 3) even = false;
    }
    if (even) return { prefix, node: await nodeOf(nodes, prefix), next: i + 1 };
  }
}

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function infos(nodes: Primary[]): Promise<string[]> {
  return Promise.all(nodes.map((n) => n.redis.info('everything')));
}

/** Runs shards × rounds interleaved on one cluster, then the queued-memory measurement. */
export async function clusterShardsBench(o: ClusterShardsOptions): Promise<ClusterShardsResult> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-cluster-shards-'));
  const cluster = await startRedisCluster();
  const nodes = await primaries(cluster);
  try {
    const idleStart = await infos(nodes);
    await sleep(IDLE_SAMPLE_MS);
    const idleEnd = await infos(nodes);
    const idleCpuUsPerSecond = nodes.map(
      (_, i) => ((parseRedisInfo(idleEnd[i]!).cpuSeconds - parseRedisInfo(idleStart[i]!).cpuSeconds) * 1e6) / (IDLE_SAMPLE_MS / 1000),
    );
    o.log(`  primaries ${cluster.ports.join(', ')}; idle ${idleCpuUsPerSecond.map((x) => x.toFixed(0)).join(', ')} CPU-µs/s`);
    const models = await writeTestModels(join(dir, 'models'));
    const list = await distinctKeys(join(dir, 'keys'), Math.max(o.images, MEMORY_BATCHES * o.batchSize));
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
    const settings = (prefix: string, shards: number) => ({
      little: spec(models.colourLittle),
      big: spec(models.colourBig),
      threshold: 0.9,
      prefix,
      batchSize: o.batchSize,
      concurrency: o.concurrency,
      queues: { shards },
      redisUrl: cluster.url,
      sources: { localRoots: [dirname(list)] },
    });
    const refs = await firstRefs(list, o.images, join(dir, 'run-refs.txt'));

    const runs: ClusterRunRow[] = [];
    let next = 0;
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? o.shards : [...o.shards].reverse();
      for (const shards of order) {
        const place = await evenPrefix(nodes, next);
        next = place.next;
        const file = join(dir, `config-${place.next}.json`);
        await writeFile(file, JSON.stringify(settings(place.prefix, shards)));
        const row = await oneRun(file, place.prefix, place.node, shards, round, refs, join(dir, `out-${place.next}`), nodes, idleCpuUsPerSecond, o.images);
        o.log(
          `  round ${round + 1} shards ${shards}: ${row.seconds.toFixed(1)} s, ${row.imagesPerSecond.toFixed(0)} images/s, workers ${row.workerCpuSeconds.toFixed(1)} CPU-s; ` +
            `net Redis CPU-µs/img per primary ${row.netCpuUsPerImage.map((x) => x.toFixed(1)).join(' / ')}, commands/img ${row.callsPerImage.map((x) => x.toFixed(3)).join(' / ')} (prefix on primary ${row.prefixNode + 1})`,
        );
        o.log(`    by kind on the prefix's primary: ${row.byKind[0]}`);
        o.log(`    by kind on another primary:    ${row.byKind[1]}`);
        runs.push(row);
      }
    }
    const summary = o.shards.map((shards) => {
      const same = runs.filter((r) => r.shards === shards);
      const perNode = (f: (r: ClusterRunRow) => number[]) => nodes.map((_, i) => median(same.map((r) => f(r)[i]!)));
      // Medians by role, not by port: the prefix's primary is put first.
      const byRole = (f: (r: ClusterRunRow) => number[]) => (r: ClusterRunRow) => rolesFirst(f(r), r.prefixNode);
      return {
        shards,
        seconds: median(same.map((r) => r.seconds)),
        imagesPerSecond: median(same.map((r) => r.imagesPerSecond)),
        workerCpuSeconds: median(same.map((r) => r.workerCpuSeconds)),
        netCpuUsPerImage: perNode(byRole((r) => r.netCpuUsPerImage)),
        callsPerImage: perNode(byRole((r) => r.callsPerImage)),
        prefixNode: 0,
        byKind: same[0]?.byKind ?? ['', ''],
      };
    });

    const memory: ClusterMemoryRow[] = [];
    const memImages = MEMORY_BATCHES * o.batchSize;
    for (const shards of o.shards) {
      const place = await evenPrefix(nodes, next);
      next = place.next;
      const config = await loadConfig({ overrides: settings(place.prefix, shards) });
      const runtime = await startRuntime(config, cluster.url, [], () => {});
      try {
        const run = await planRun(config, list, join(dir, `mem-${shards}`), runtime.models, `mem-${shards}`);
        for (let k = 0; k < shards; k++) await runtime.queues.stage('little', k, shards).waitUntilReady();
        const before = (await infos(nodes)).map((i) => parseRedisInfo(i).usedMemory);
        await submitRun({
          spec: run,
          refs: listSource(await firstRefs(list, memImages, join(dir, `mem-refs-${shards}.txt`)), { extensions: config.extensions }),
          tracker: runtime.tracker,
          queues: runtime.queues,
          output: runtime.openOutput(run.out),
        });
        const after = (await infos(nodes)).map((i) => parseRedisInfo(i).usedMemory);
        const grown = rolesFirst(
          after.map((a, i) => a - before[i]!),
          place.node,
        );
        // Bytes per queued image are MB per million.
        memory.push({ shards, images: memImages, mbPer1MImages: grown.map((b) => b / memImages) });
      } finally {
        await runtime.close();
      }
    }
    return { idleCpuUsPerSecond, runs, summary, memory };
  } finally {
    for (const n of nodes) n.redis.disconnect();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** `values` with the prefix's primary first, the others after in order. */
function rolesFirst(values: number[], prefixNode: number): number[] {
  return [values[prefixNode]!, ...values.filter((_, i) => i !== prefixNode)];
}

/** A key list of the first `n` refs of `list`. */
async function firstRefs(list: string, n: number, to: string): Promise<string> {
  const lines = (await readFile(list, 'utf8')).split('\n').filter(Boolean).slice(0, n);
  await writeFile(to, `${lines.join('\n')}\n`);
  return to;
}

/** One whole run with two worker processes of the built CLI (the first also merges). */
async function oneRun(
  configFile: string,
  prefix: string,
  prefixNode: number,
  shards: number,
  round: number,
  refs: string,
  out: string,
  nodes: Primary[],
  idle: number[],
  images: number,
): Promise<ClusterRunRow> {
  const env = { REDIS_URL: '', CASCADE_LOG_LEVEL: 'info' };
  const workers: CliProcess[] = [
    spawnCascade(['worker', 'little', 'big', 'merge', '--config', configFile], env),
    spawnCascade(['worker', 'little', 'big', '--config', configFile], env),
  ];
  const config = await loadConfig({ file: configFile });
  const runtime = await startRuntime(config, config.redisUrl!, [], () => {});
  try {
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/, 120_000)));
    const run = await planRun(config, refs, out, runtime.models, `cs-${prefix.replace(/[{}]/g, '')}`);
    const cpuBefore = await Promise.all(workers.map((w) => processCpuSeconds(w.child.pid!)));
    const before = await infos(nodes);
    const started = performance.now();
    await submitRun({
      spec: run,
      refs: listSource(refs, { extensions: config.extensions }),
      tracker: runtime.tracker,
      queues: runtime.queues,
      output: runtime.openOutput(run.out),
    });
    await waitForRun(runtime.tracker, run.runId, () => {}, 500);
    const seconds = (performance.now() - started) / 1000;
    const after = await infos(nodes);
    const cpuAfter = await Promise.all(workers.map((w) => processCpuSeconds(w.child.pid!)));
    const cpu = nodes.map((_, i) => parseRedisInfo(after[i]!).cpuSeconds - parseRedisInfo(before[i]!).cpuSeconds);
    const calls = nodes.map((_, i) => {
      const b = commandCalls(before[i]!);
      return [...commandCalls(after[i]!)].reduce((n, [name, c]) => n + c - (b.get(name) ?? 0), 0);
    });
    return {
      shards,
      round,
      seconds,
      imagesPerSecond: images / seconds,
      workerCpuSeconds: cpuAfter.reduce((a, b) => a + b, 0) - cpuBefore.reduce((a, b) => a + b, 0),
      netCpuUsPerImage: cpu.map((c, i) => Math.max(0, (c * 1e6 - idle[i]! * seconds) / images)),
      callsPerImage: calls.map((c) => c / images),
      prefixNode,
      byKind: [prefixNode, (prefixNode + 1) % nodes.length].map((i) => callsByKind(commandCalls(before[i]!), commandCalls(after[i]!), images, 10)) as [
        string,
        string,
      ],
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await runtime.close();
  }
}
