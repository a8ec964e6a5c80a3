/**
 * The full pipeline as `cascade run` wires it — private redis-server, an s3rver bucket as the
 * source and the output, little/big/merge workers in this process — timed from submission to
 * the merged summary. Queue wait per job comes from BullMQ's event stream (added → active).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { QueueEvents } from 'bullmq';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import pLimit from 'p-limit';
import { startPrivateRedis, type PrivateRedis } from '../cli/private-redis.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { loadConfig } from '../config/load-config.js';
import type { CascadeConfig, CascadeConfigInput } from '../config/schema.js';
import type { RunSummary } from '../pipeline/results/manifest.js';
import { listSource } from '../producers/list-source.js';
import { submitRun } from '../producers/submit-run.js';
import { configuredStages } from '../config/stages.js';
import { startRuntime } from '../workers/cascade-runtime.js';
import { stageQueueName } from '../queue/jobs.js';
import { connectRedis } from '../queue/redis-connection.js';
import { startS3Process, type S3Process } from './s3rver-process.js';
import { planRun } from '../producers/plan-run.js';

export interface PipelineEnv {
  redis: PrivateRedis;
  s3: S3Process;
  /** s3:// prefix holding the photos. */
  source: string;
  stop(): Promise<void>;
}

export interface PipelineOptions {
  little: string;
  big: string;
  threshold: number;
  metric?: 'maxprob' | 'margin' | 'entropy';
  /** Any other config fields (threads, concurrency, batch size). */
  config?: Partial<Record<keyof CascadeConfigInput, unknown>>;
  /** Distinguishes the run id and output prefix of repeats. */
  tag: string;
}

export interface PipelineResult {
  images: number;
  seconds: number;
  imagesPerSecond: number;
  routed: number;
  /** CPU time of this process (all its threads) per image, ms. */
  cpuMsPerImage: number;
  summary: RunSummary;
  /** Mean queue wait per job and stage, ms. */
  queueWaitMs: Record<string, number>;
  config: CascadeConfig;
}

/** Start redis-server and s3rver and upload `photos` to s3://images-in/photos/. */
export async function startPipelineEnv(photos: string[]): Promise<PipelineEnv> {
  const [redis, s3] = await Promise.all([startPrivateRedis(), startS3Process(['images-in', 'results'])]);
  const limit = pLimit(16);
  await Promise.all(
    photos.map((p) => limit(async () => s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: `photos/${basename(p)}`, Body: await readFile(p) })))),
  );
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
  return { redis, s3, source: 's3://images-in/photos/', stop: async () => void (await Promise.allSettled([redis.stop(), s3.stop()])) };
}

/** Per-stage mean time from a job's `waiting` event to its `active` event. */
class QueueWaits {
  private readonly events: QueueEvents[] = [];
  // BullMQ never closes a connection it was given.
  private readonly connections: Array<ReturnType<typeof connectRedis>> = [];
  private readonly added = new Map<string, number>();
  private readonly waits = new Map<string, number[]>();

  constructor(url: string, prefix: string, stages: string[]) {
    for (const name of stages) {
      const connection = connectRedis(url);
      this.connections.push(connection);
      const ev = new QueueEvents(stageQueueName(name), { connection, prefix });
      // Stream ids start with the event's Redis time in ms, so both ends use one clock.
      const ms = (id: string) => Number(id.split('-')[0]);
      ev.on('waiting', ({ jobId }, id) => void (this.added.has(jobId) || this.added.set(jobId, ms(id))));
      ev.on('active', ({ jobId }, id) => {
        const from = this.added.get(jobId);
        if (from !== undefined) this.waits.set(name, [...(this.waits.get(name) ?? []), ms(id) - from]);
      });
      this.events.push(ev);
    }
  }

  async ready(): Promise<void> {
    await Promise.all(this.events.map((e) => e.waitUntilReady()));
  }

  means(): Record<string, number> {
    return Object.fromEntries([...this.waits].map(([k, v]) => [k, v.reduce((a, b) => a + b, 0) / Math.max(v.length, 1)]));
  }

  async close(): Promise<void> {
    await Promise.all(this.events.map((e) => e.close()));
    for (const c of this.connections) c.disconnect();
  }
}

/** One cascade run over the env's photos; returns its timing and summary. */
export async function runPipeline(env: PipelineEnv, o: PipelineOptions): Promise<PipelineResult> {
  const prefix = `bench-${o.tag}`;
  const config = await loadConfig({
    overrides: { little: o.little, big: o.big, threshold: o.threshold, metric: o.metric ?? 'maxprob', prefix, ...o.config },
    env: { ...process.env, CASCADE_S3_ENDPOINT: env.s3.endpoint },
  });
  const runtime = await startRuntime(config, env.redis.url, ['little', 'big', 'merge'], () => {});
  const waits = new QueueWaits(
    env.redis.url,
    prefix,
    configuredStages(config).map((s) => s.name),
  );
  try {
    await waits.ready();
    const runId = `bench-${o.tag}`;
    const spec = await planRun(config, env.source, `s3://results/${o.tag}/`, runtime.models, runId);
    const started = performance.now();
    const cpu = process.cpuUsage();
    const submitted = await submitRun({
      spec,
      refs: listSource(env.source, { extensions: config.extensions, stores: runtime.stores }),
      tracker: runtime.tracker,
      queues: runtime.queues,
      output: runtime.openOutput(spec.out),
    });
    const summary = await waitForRun(runtime.tracker, runId, () => {}, 50);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const cpuMsPerImage = (used.user + used.system) / 1000 / submitted.images;
    return {
      images: submitted.images,
      seconds,
      imagesPerSecond: submitted.images / seconds,
      cpuMsPerImage,
      routed: summary.fractionToBig,
      summary,
      queueWaitMs: waits.means(),
      config,
    };
  } finally {
    await waits.close();
    await runtime.close();
  }
}
