/**
 * A fleet of separate processes — two little workers, one big+merge worker, a submitter and
 * `cascade status` — built CLI (bin/cascade.js → dist/; `npm test` builds first), real
 * redis-server, real s3rver and generated models whose routing is known exactly.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { RunStatus } from '../../cli/format-status.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { ManifestRow, ResultPart, type RunSummary } from '../../pipeline/results/manifest.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { startRedis, uniquePrefix } from '../helpers/redis.js';
import { S3RVER_ENV } from '../helpers/s3.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withTempDir } from '../helpers/fixtures.js';

const execFileP = promisify(execFile);

// Little logits are [8r, 8g, 8b, 2]: saturated colours stay with little at threshold 0.9, greys go to big.
const COLOURS: Array<{ rgb: [number, number, number]; stage: 'little' | 'big'; label: string }> = [
  { rgb: [255, 0, 0], stage: 'little', label: 'red' },
  { rgb: [0, 255, 0], stage: 'little', label: 'green' },
  { rgb: [0, 0, 255], stage: 'little', label: 'blue' },
  { rgb: [128, 128, 128], stage: 'big', label: 'other' },
  { rgb: [64, 64, 64], stage: 'big', label: 'other' },
];
const N = 30;
const IMAGES = Array.from({ length: N }, (_, i) => ({ name: `img-${String(i).padStart(2, '0')}.png`, ...COLOURS[i % COLOURS.length]! }));
const TO_BIG = IMAGES.filter((i) => i.stage === 'big').length;
const BATCH = 2;

let config: string;
let prefix: string;
const env = { ...process.env, REDIS_URL: '', ...S3RVER_ENV, CASCADE_LOG_LEVEL: 'info' };

interface CliProcess {
  child: ChildProcess;
  stderr: () => string;
  /** Resolves with the first match of `re` in stderr. */
  waitFor(re: RegExp): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `cascade <args>` as a child process of the built CLI. */
function spawnCli(args: string[]): CliProcess {
  const child = spawn(process.execPath, ['bin/cascade.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  child.stdout!.resume();
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
    for (const w of [...waiters]) {
      const m = err.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stderr: () => err,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        const m = err.match(re);
        if (m) return resolve(m);
        waiters.push({ re, resolve });
        void exited.then(({ code }) => reject(new Error(`cascade ${args.join(' ')} exited (${code}) before printing ${re}:\n${err}`)));
      }),
    exited,
  };
}

async function metricsText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one sample in Prometheus text, e.g. sample(text, 'cascade_images_total', {stage: 'big', outcome: 'accepted'}). */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const work = withTempDir('fleet');
const redis = withRedis();
const s3 = withS3({ buckets: ['images-in', 'results'] });
const models = withModels(work);

beforeAll(async () => {
  for (const img of IMAGES) {
    const [r, g, b] = img.rgb;
    const body = await sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
      .png()
      .toBuffer();
    await s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: `imgs/${img.name}`, Body: body }));
  }
  const spec = (path: string) => colourSpec(path, models.labels);
  prefix = uniquePrefix('fleet');
  config = join(work.path, 'cascade.json');
  await writeFile(
    config,
    JSON.stringify({
      little: spec(models.colourLittle),
      big: spec(models.colourBig),
      threshold: 0.9,
      batchSize: BATCH,
      concurrency: 1,
      redisUrl: redis.url,
      prefix,
      s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' },
    }),
  );
});

describe('a fleet of worker processes', () => {
  it('2 little workers, 1 big+merge worker and a separate submitter label every image exactly once; SIGTERM exits cleanly', async () => {
    const workers = {
      littleA: spawnCli(['worker', 'little', '--config', config, '--metrics-port', '0', '--metrics-host', '127.0.0.1']),
      littleB: spawnCli(['worker', 'little', '--config', config, '--metrics-port', '0', '--metrics-host', '127.0.0.1']),
      big: spawnCli(['worker', 'big', 'merge', '--config', config, '--metrics-port', '0', '--metrics-host', '127.0.0.1']),
    };
    const connection = connectRedis(redis.url);
    let exits: Array<{ code: number | null; signal: NodeJS.Signals | null }> = [];
    try {
      const ports = Object.fromEntries(
        await Promise.all(Object.entries(workers).map(async ([k, w]) => [k, Number((await w.waitFor(/metrics on port (\d+)/))[1])] as const)),
      );

      const submitted = await execFileP(
        process.execPath,
        ['bin/cascade.js', 'submit', 's3://images-in/imgs/', '--out', 's3://results/fleet/', '--config', config, '--run-id', 'fleet-1', '--json'],
        { env, timeout: 30_000 },
      );
      expect(JSON.parse(submitted.stdout)).toMatchObject({
        runId: 'fleet-1',
        images: N,
        batches: N / BATCH,
        alreadySubmitted: false,
        out: 's3://results/fleet/',
      });

      // Stop one little worker as soon as the run is under way: it finishes what it holds and
      // exits 0; the other worker takes the rest.
      const tracker = new RunTracker(connection, prefix);
      let stopped = false;
      const summary: RunSummary = await waitForRun(tracker, 'fleet-1', (p) => {
        if (!stopped && (p.stages[0]?.images ?? 0) > 0) {
          stopped = true;
          workers.littleA.child.kill('SIGTERM');
        }
      });
      expect(await workers.littleA.exited).toEqual({ code: 0, signal: null });
      expect(workers.littleA.stderr()).toMatch(/worker stopped cleanly/);

      // Each image exactly once: one row per input, stage-0 parts cover the inputs exactly.
      expect(summary.images).toBe(N);
      expect(summary.stages[0]).toMatchObject({ name: 'little', images: N, accepted: N - TO_BIG, forwarded: TO_BIG, errors: 0 });
      expect(summary.stages[1]).toMatchObject({ name: 'big', images: TO_BIG, accepted: TO_BIG });
      const get = async (key: string) => (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: key }))).Body!.transformToString();
      const rows = (await get('fleet/manifest.jsonl'))
        .trim()
        .split('\n')
        .map((l) => ManifestRow.parse(JSON.parse(l)));
      expect(rows.map((r) => r.key)).toEqual(IMAGES.map((i) => `s3://images-in/imgs/${i.name}`));
      for (const [i, row] of rows.entries()) expect([row.stage, row.labelName], IMAGES[i]!.name).toEqual([IMAGES[i]!.stage, IMAGES[i]!.label]);
      const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: 'results', Prefix: 'fleet/parts/' }));
      const stage0 = (listed.Contents ?? []).map((o) => o.Key!).filter((k) => k.endsWith('.stage0.json'));
      expect(stage0).toHaveLength(N / BATCH);
      const parts = await Promise.all(stage0.map(async (k) => ResultPart.parse(JSON.parse(await get(k)))));
      expect(parts.reduce((n, p) => n + p.stats.images, 0)).toBe(N);
      expect((await tracker.progress('fleet-1'))!.stages[0]!.images).toBe(N);

      // The metrics of the processes still up: big saw exactly what little forwarded.
      const bigMetrics = await metricsText(ports.big!);
      expect(sample(bigMetrics, 'cascade_images_total', { stage: 'big', outcome: 'accepted' })).toBe(TO_BIG);
      expect(sample(bigMetrics, 'cascade_queue_jobs', { queue: 'stage-little', state: 'waiting' })).toBe(0);
      expect(bigMetrics).toMatch(/cascade_batch_seconds_count\{stage="big"\} \d+/);
      const littleB = await metricsText(ports.littleB!);
      const littleBImages = ['accepted', 'forwarded', 'error'].reduce(
        (n, outcome) => n + sample(littleB, 'cascade_images_total', { stage: 'little', outcome }),
        0,
      );
      // Every stage-0 part names the process that wrote it: worker B wrote exactly the images its
      // metrics counted, and worker A (stopped early) every other one (the two add up to N).
      const imagesBy = (pid: number | undefined) => parts.filter((p) => p.writer?.pid === pid).reduce((n, p) => n + p.stats.images, 0);
      expect(imagesBy(workers.littleB.child.pid)).toBe(littleBImages);
      expect(imagesBy(workers.littleA.child.pid)).toBe(N - littleBImages);

      // `cascade status` in another process (the text form is covered in status.test.ts).
      const json = await execFileP(process.execPath, ['bin/cascade.js', 'status', 'fleet-1', '--json', '--config', config], { env, timeout: 30_000 });
      const status = RunStatus.parse(JSON.parse(json.stdout));
      expect(status).toMatchObject({ runId: 'fleet-1', state: 'done', total: N, done: N, fraction: 1 });
      expect(status.stages.map((s) => [s.name, s.done, s.routed, s.queued, s.active, s.pending])).toEqual([
        ['little', N, TO_BIG, 0, 0, 0],
        ['big', TO_BIG, 0, 0, 0, 0],
      ]);
    } finally {
      for (const w of Object.values(workers)) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
      exits = await Promise.all(Object.values(workers).map((w) => w.exited));
      connection.disconnect();
    }
    // After the finally, so a failure above is reported as itself rather than as a bad exit.
    expect(exits, JSON.stringify(exits)).toEqual([0, 0, 0].map((code) => ({ code, signal: null })));
  });

  it('SIGTERM waits for the batch in flight; a second SIGTERM exits at once, leaving the job to BullMQ', async () => {
    // An S3 proxy in front of s3rver that holds GETs of hold-* objects until released, so a
    // batch is provably in flight when the signal arrives.
    const held: Array<() => void> = [];
    const proxy = createServer((req, res) => {
      const forward = () => {
        const up = request({ host: '127.0.0.1', port: s3.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode!, r.headers);
          r.pipe(res);
        });
        // A client killed mid-request (the forced worker) must not fail the test process.
        up.on('error', () => res.destroy());
        res.on('error', () => up.destroy());
        req.pipe(up);
      };
      if (req.method === 'GET' && req.url!.includes('/hold-')) held.push(forward);
      else forward();
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxied = join(work.path, 'proxied.json');
    const base = JSON.parse(await readFile(config, 'utf8'));
    const drainPrefix = `${prefix}d`;
    await writeFile(
      proxied,
      JSON.stringify({ ...base, prefix: drainPrefix, s3: { ...base.s3, endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` } }),
    );
    const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .png()
      .toBuffer();
    for (const key of ['drain/hold-0.png', 'force/hold-1.png']) await s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: key, Body: red }));
    const untilHeld = async (n: number) => {
      while (held.length < n) await sleep(20);
    };
    const connection = connectRedis(redis.url);
    const tracker = new RunTracker(connection, drainPrefix);
    try {
      const drained = spawnCli(['worker', 'little', 'big', '--config', proxied]);
      await drained.waitFor(/worker ready/);
      await execFileP(
        process.execPath,
        ['bin/cascade.js', 'submit', 's3://images-in/drain/', '--out', 's3://results/drain/', '--config', proxied, '--run-id', 'drain-1'],
        { env, timeout: 30_000 },
      );
      await untilHeld(1);
      drained.child.kill('SIGTERM');
      await drained.waitFor(/finishing the batches in flight/);
      // The fetch is still held, so the batch cannot have finished: the worker must still be up.
      expect(drained.child.exitCode).toBeNull();
      held.shift()!();
      expect(await drained.exited).toEqual({ code: 0, signal: null });
      const p = (await tracker.progress('drain-1'))!;
      expect([p.final, p.stages[0]!.accepted, p.completedAt !== null]).toEqual([1, 1, true]);

      const forced = spawnCli(['worker', 'little', '--config', proxied]);
      await forced.waitFor(/worker ready/);
      await execFileP(
        process.execPath,
        ['bin/cascade.js', 'submit', 's3://images-in/force/', '--out', 's3://results/force/', '--config', proxied, '--run-id', 'force-1'],
        { env, timeout: 30_000 },
      );
      await untilHeld(1);
      forced.child.kill('SIGTERM');
      await forced.waitFor(/finishing the batches in flight/);
      forced.child.kill('SIGTERM');
      expect((await forced.exited).code).toBe(1);
      expect(forced.stderr()).toMatch(/exiting without waiting for jobs in flight/);
      // The batch was not lost: it is still active in Redis, and BullMQ's stalled-job check hands
      // it to the next worker once the dead one's lock expires.
      const queue = new Queue('stage-little', { connection, prefix: drainPrefix });
      expect(await queue.getRanges(['active'], 0, -1)).toEqual(['force-1-b0-s0']);
      expect((await tracker.progress('force-1'))!.final).toBe(0);
      await queue.close();
    } finally {
      for (const release of held.splice(0)) release();
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
      connection.disconnect();
    }
  });

  it('a Redis password in REDIS_URL and the S3 secret never reach the logs', async () => {
    const secured = await startRedis();
    const admin = connectRedis(secured.url);
    await admin.config('SET', 'requirepass', 'pw-Zq81x');
    admin.disconnect();
    try {
      const url = `redis://:pw-Zq81x@127.0.0.1:${secured.port}`;
      // REDIS_URL wins over the config's redisUrl: this worker talks to the password-protected server.
      const child = spawn(process.execPath, ['bin/cascade.js', 'worker', 'merge', 'scheduler', '--config', config], {
        env: { ...env, REDIS_URL: url, AWS_SECRET_ACCESS_KEY: 'aws-Secret-77' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      while (!/worker ready/.test(err)) {
        expect(child.exitCode, err).toBeNull();
        await sleep(50);
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(err).toContain(`redis://***@127.0.0.1:${secured.port}`);
      expect(err).not.toContain('pw-Zq81x');
      expect(err).not.toContain('aws-Secret-77');
    } finally {
      await secured.stop();
    }
  });

  it('a worker refuses a malformed role and flags that would change rows, exit 2', async () => {
    const w = spawnCli(['worker', 'little', 'huge model', '--config', config]);
    expect((await w.exited).code).toBe(2);
    expect(w.stderr()).toMatch(/unknown worker role 'huge model': expected a stage name/);
    const m = spawnCli(['worker', 'little', '--little', models.colourBig, '--config', config]);
    expect((await m.exited).code).toBe(2);
    expect(m.stderr()).toMatch(/cascade worker does not take --little: a worker labels each run with the models and settings the run pinned at submit/);
  });

  it('workers with no model settings serve two concurrent runs with different models; each manifest equals a one-process `cascade run`', async () => {
    const spec = (path: string) => JSON.stringify(colourSpec(path, models.labels));
    const specFile = async (name: string, path: string) => {
      const file = join(work.path, `${name}.json`);
      await writeFile(file, spec(path));
      return file;
    };
    // Two cascades that share no model: every row tells which models labelled it.
    const runs = {
      a: { little: await specFile('a-little', models.colourLittle), big: await specFile('a-big', models.colourBig), threshold: '0.9' },
      b: { little: await specFile('b-little', models.convNet), big: await specFile('b-big', models.colourLittle), threshold: '0.3' },
    };
    const mixPrefix = `${prefix}m`;
    // The fleet's own config: infrastructure only.
    const fleetConfig = join(work.path, 'fleet-only.json');
    await writeFile(
      fleetConfig,
      JSON.stringify({ redisUrl: redis.url, prefix: mixPrefix, concurrency: 1, s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } }),
    );
    const workers = [spawnCli(['worker', 'little', '--config', fleetConfig]), spawnCli(['worker', 'big', 'merge', '--config', fleetConfig])];
    const connection = connectRedis(redis.url);
    try {
      await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));
      const flags = (r: (typeof runs)['a']) => ['--little', r.little, '--big', r.big, '--threshold', r.threshold, '--batch-size', String(BATCH)];
      // Submitted at the same moment, so both runs are in the queues together.
      await Promise.all(
        (['a', 'b'] as const).map((k) =>
          execFileP(
            process.execPath,
            [
              'bin/cascade.js',
              'submit',
              's3://images-in/imgs/',
              '--out',
              `s3://results/mix-${k}/`,
              '--config',
              fleetConfig,
              '--run-id',
              `mix-${k}`,
              ...flags(runs[k]),
            ],
            { env, timeout: 60_000 },
          ),
        ),
      );
      const tracker = new RunTracker(connection, mixPrefix);
      const summaries = { a: await waitForRun(tracker, 'mix-a', () => {}), b: await waitForRun(tracker, 'mix-b', () => {}) };
      const get = async (key: string) => (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: key }))).Body!.transformToString();
      for (const k of ['a', 'b'] as const) {
        // The same cascade in one process (private Redis), written to disk.
        const local = join(work.path, `mix-${k}-local`);
        const s3Only = join(work.path, 's3-only.json');
        await writeFile(s3Only, JSON.stringify({ s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } }));
        await execFileP(process.execPath, ['bin/cascade.js', 'run', 's3://images-in/imgs/', '--out', local, '--config', s3Only, ...flags(runs[k])], {
          env,
          timeout: 120_000,
        });
        const fleetRows = (await get(`mix-${k}/manifest.jsonl`)).trim().split('\n');
        const localRows = (await readFile(join(local, 'manifest.jsonl'), 'utf8')).trim().split('\n');
        expect(fleetRows).toHaveLength(N);
        expect(fleetRows, `run ${k}`).toEqual(localRows);
        // Provenance: each stage names the model it pinned, by content.
        const summary = summaries[k];
        const sha = async (file: string) =>
          createHash('sha256')
            .update(await readFile(JSON.parse(await readFile(file, 'utf8')).path))
            .digest('hex');
        expect(summary.stages.map((s) => s.model?.sha256)).toEqual([await sha(runs[k].little), await sha(runs[k].big)]);
        expect(summary.stages[0]!.provenance).toMatchObject({
          numerics: 'auto',
          numericsUsed: ['native'],
          executionProviders: ['cpu'],
          workers: 1,
          probeMaxDiff: 0,
        });
      }
      // The two runs really labelled differently: the models differ.
      expect(await get('mix-a/manifest.jsonl')).not.toEqual(await get('mix-b/manifest.jsonl'));
    } finally {
      for (const w of workers) w.child.kill('SIGTERM');
      await Promise.all(workers.map((w) => w.exited));
      connection.disconnect();
    }
  });
});
