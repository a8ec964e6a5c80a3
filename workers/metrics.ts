/**
 * Prometheus metrics of one worker process (prom-client). Each process owns its own
 * Registry — passed in, never the global one — so tests and several runtimes in one
 * process do not share counters. Queue depth is read from Redis when scraped, not polled.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Queue } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StageStats } from '../pipeline/results/manifest.js';

/** Job states reported as queue depth (one job = one batch of images). */
const DEPTH_STATES = ['waiting', 'delayed', 'prioritized', 'active', 'failed'] as const;

export interface MetricsOptions {
  registry?: Registry;
  /** The queues whose depth is reported, by name; read at scrape time. */
  queues?: () => ReadonlyArray<{ name: string; queue: Queue }>;
  /** Also export Node's process metrics (CPU, memory, event-loop lag). */
  processMetrics?: boolean;
}

/** The cascade's metrics in one registry. */
export class CascadeMetrics {
  readonly registry: Registry;
  private readonly images: Counter<'stage' | 'outcome'>;
  private readonly batchSeconds: Histogram<'stage'>;
  private readonly errors: Counter<'stage' | 'kind'>;
  private readonly routed: Gauge<'stage'>;
  // Cumulative per-stage totals behind the routed-fraction gauge.
  private readonly seen = new Map<string, { images: number; forwarded: number }>();

  constructor(o: MetricsOptions = {}) {
    const registry = o.registry ?? new Registry();
    this.registry = registry;
    if (o.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'cascade_' });
    this.images = new Counter({
      name: 'cascade_images_total',
      help: 'Images processed, by stage and outcome (accepted, forwarded, error)',
      labelNames: ['stage', 'outcome'],
      registers: [registry],
    });
    this.batchSeconds = new Histogram({
      name: 'cascade_batch_seconds',
      help: 'Wall time of one batch job (fetch, decode, inference), by stage',
      labelNames: ['stage'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
    this.errors = new Counter({
      name: 'cascade_errors_total',
      help: 'Images that became error rows, by stage and error kind',
      labelNames: ['stage', 'kind'],
      registers: [registry],
    });
    this.routed = new Gauge({
      name: 'cascade_routed_fraction',
      help: 'Fraction of the images a stage looked at that it forwarded to the next stage (this process, since start)',
      labelNames: ['stage'],
      registers: [registry],
    });
    const queues = o.queues;
    if (queues) {
      new Gauge({
        name: 'cascade_queue_jobs',
        help: 'Jobs (batches) in a queue by state, read from Redis at scrape time',
        labelNames: ['queue', 'state'],
        registers: [registry],
        async collect() {
          this.reset();
          for (const { name, queue } of queues()) {
            const counts = await queue.getJobCounts(...DEPTH_STATES);
            for (const state of DEPTH_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
          }
        },
      });
    }
  }

  /** Record one finished batch of `stage` (the StageWorker `onBatch` hook). */
  onBatch(stage: string, stats: StageStats, errorsByKind: Record<string, number>): void {
    this.images.inc({ stage, outcome: 'accepted' }, stats.accepted);
    this.images.inc({ stage, outcome: 'forwarded' }, stats.forwarded);
    this.images.inc({ stage, outcome: 'error' }, stats.errors);
    this.batchSeconds.observe({ stage }, stats.jobMs / 1000);
    for (const [kind, n] of Object.entries(errorsByKind)) this.errors.inc({ stage, kind }, n);
    const seen = this.seen.get(stage) ?? { images: 0, forwarded: 0 };
    seen.images += stats.images;
    seen.forwarded += stats.forwarded;
    this.seen.set(stage, seen);
    if (seen.images > 0) this.routed.set({ stage }, seen.forwarded / seen.images);
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serve `GET /metrics` (and `GET /healthz`) on `port` (0 = any free port) and `host`. */
export async function serveMetrics(metrics: CascadeMetrics, port: number, host = '0.0.0.0'): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    // Liveness for orchestrators: the process is up and its event loop answers.
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
