/**
 * Prometheus metrics of one worker process (prom-client). Each process owns its own
 * Registry — passed in, never the global one — so tests and several runtimes in one
 * process do not share counters. Queue depth and schedule successes are read from Redis when
 * scraped, but a scrape never waits on Redis for longer than a deadline: past it, the last
 * values read are served with their age, so `/metrics` answers while Redis is down.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Queue } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ImageErrorKind, type StageStats } from '../pipeline/results/manifest.js';
import type { PartCost } from '../pipeline/cost/run-cost.js';

/** Job states reported as queue depth (one job = one batch of images). */
const DEPTH_STATES = ['waiting', 'delayed', 'prioritized', 'active', 'failed'] as const;

/** Outcomes counted per stage in cascade_images_total. */
const IMAGE_OUTCOMES = ['accepted', 'forwarded', 'error'] as const;

/**
 * prom-client's default gauges whose names end in `_total`, which Prometheus reserves for
 * counters (`promtool check metrics` fails on them). Their per-type siblings without the suffix
 * (`nodejs_active_handles{type}`, …) carry the same numbers: sum them for the total.
 */
const NON_COUNTER_TOTALS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** How long a scrape waits for Redis before serving the last values read. */
export const DEFAULT_REDIS_DEADLINE_MS = 500;

/** What one scrape reads from Redis. */
interface FleetSnapshot {
  /** Per queue: job counts by state, and when its oldest waiting job was added (ms since epoch; undefined when none waits). */
  queues: Array<{ name: string; counts: Record<string, number>; oldestWaitingAt: number | undefined }>;
  /** Schedule name → completion time (ms since epoch) of its newest merged run. */
  lastSuccess: Record<string, number>;
}

/** How a scheduled firing ended: its run submitted, or failed for good. */
export type FiringOutcome = 'submitted' | 'failed';

export interface MetricsOptions {
  registry?: Registry;
  /** The queues whose depth is reported, by name; read at scrape time. */
  queues?: () => ReadonlyArray<{ name: string; queue: Queue }>;
  /** Per schedule, when its newest run finished (ms since epoch); read at scrape time (the scheduler role). */
  scheduleSuccesses?: () => Promise<Record<string, number>>;
  /** Also export prom-client's default process_* and nodejs_* metrics (CPU, memory, event-loop lag, GC). */
  processMetrics?: boolean;
  /** How long a scrape waits for Redis (default DEFAULT_REDIS_DEADLINE_MS). */
  redisDeadlineMs?: number;
  /** The stages this process runs: their image and error counters start at 0, so rates and ratios exist before the first batch or error. */
  stages?: readonly string[];
  /** This process merges runs: cascade_runs_total of unscheduled runs starts at 0. */
  merges?: boolean;
  /** The clock (ms since epoch); tests pass their own. */
  now?: () => number;
}

/**
 * The last value of an async read, refreshed at most once at a time. `get` waits for a refresh
 * up to a deadline; a refresh still pending then keeps running and updates the value when it
 * lands, and no second one starts, so a dead Redis does not pile up commands scrape by scrape.
 */
class CachedRead<T> {
  private value: T | undefined;
  private okAt: number | undefined;
  // Successful reads so far: a scrape's value is fresh when this moved while it waited.
  private reads = 0;
  private pending: Promise<void> | undefined;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly now: () => number,
  ) {}

  /** The value (fresh when `fresh`), when it was read, after waiting at most `deadlineMs`. */
  async get(deadlineMs: number): Promise<{ value: T | undefined; okAt: number | undefined; fresh: boolean }> {
    const before = this.reads;
    this.pending ??= this.read().then(
      (v) => {
        this.value = v;
        this.okAt = this.now();
        this.reads++;
        this.pending = undefined;
      },
      () => {
        this.pending = undefined;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.pending, new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)))]);
    clearTimeout(timer);
    return { value: this.value, okAt: this.okAt, fresh: this.reads !== before };
  }
}

/** The cascade's metrics in one registry. */
export class CascadeMetrics {
  readonly registry: Registry;
  private readonly images: Counter<'stage' | 'outcome'>;
  private readonly batchSeconds: Histogram<'stage'>;
  private readonly errors: Counter<'stage' | 'kind'>;
  private readonly costSeconds: Counter<'stage' | 'worker_class'>;
  private readonly routed: Gauge<'stage'>;
  private readonly firings: Counter<'schedule' | 'outcome'>;
  private readonly runs: Counter<'schedule' | 'outcome'>;
  // Cumulative per-stage totals behind the routed-ratio gauge.
  private readonly seen = new Map<string, { images: number; forwarded: number }>();

  constructor(o: MetricsOptions = {}) {
    const registry = o.registry ?? new Registry();
    this.registry = registry;
    const now = o.now ?? Date.now;
    const deadlineMs = o.redisDeadlineMs ?? DEFAULT_REDIS_DEADLINE_MS;
    // Unprefixed, as prom-client names them: stock Node.js dashboards and alerts expect these names.
    if (o.processMetrics) {
      collectDefaultMetrics({ register: registry });
      for (const name of NON_COUNTER_TOTALS) registry.removeSingleMetric(name);
    }
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
    this.costSeconds = new Counter({
      name: 'cascade_cost_seconds_total',
      help: 'Machine time the batches of a stage used, by worker class: core-seconds on cpu, GPU-seconds on gpu (pipeline/cost/cost-meter.ts)',
      labelNames: ['stage', 'worker_class'],
      registers: [registry],
    });
    this.errors = new Counter({
      name: 'cascade_errors_total',
      help: 'Images that became error rows, by stage and error kind',
      labelNames: ['stage', 'kind'],
      registers: [registry],
    });
    this.routed = new Gauge({
      name: 'cascade_routed_ratio',
      help: 'Fraction of the images a stage looked at that it forwarded to the next stage (this process, since start)',
      labelNames: ['stage'],
      registers: [registry],
    });
    this.firings = new Counter({
      name: 'cascade_schedule_runs_total',
      help: 'Scheduled firings handled by this process, by schedule and outcome (submitted: its run was queued; failed: for good, after every attempt)',
      labelNames: ['schedule', 'outcome'],
      registers: [registry],
    });
    this.runs = new Counter({
      name: 'cascade_runs_total',
      help: 'Runs this process merged (outcome merged) or whose merge failed for good (failed), by schedule ("" for runs not fired by a schedule)',
      labelNames: ['schedule', 'outcome'],
      registers: [registry],
    });
    // Known label sets at 0: a series that appears only with its first error has no rate before
    // it, so an error-ratio alert would miss the first burst.
    for (const stage of o.stages ?? []) {
      for (const outcome of IMAGE_OUTCOMES) this.images.inc({ stage, outcome }, 0);
      for (const kind of ImageErrorKind.options) this.errors.inc({ stage, kind }, 0);
      this.batchSeconds.zero({ stage });
    }
    if (o.merges) for (const outcome of ['merged', 'failed'] as const) this.runs.inc({ schedule: '', outcome }, 0);
    const { queues, scheduleSuccesses } = o;
    if (!queues && !scheduleSuccesses) return;

    const startedAt = now();
    const fleet = new CachedRead<FleetSnapshot>(async () => {
      const list = queues?.() ?? [];
      const [counts, lastSuccess] = await Promise.all([
        Promise.all(
          list.map(async ({ name, queue }) => {
            // getWaiting(0, 0) is the tail of the wait list: the job waiting longest.
            const [c, [oldest]] = await Promise.all([queue.getJobCounts(...DEPTH_STATES), queue.getWaiting(0, 0)]);
            return { name, counts: c, oldestWaitingAt: oldest?.timestamp };
          }),
        ),
        scheduleSuccesses?.() ?? {},
      ]);
      return { queues: counts, lastSuccess };
    }, now);
    // One read per scrape feeds every Redis gauge: the first collect() waits, the others reuse it.
    let scrape: ReturnType<CachedRead<FleetSnapshot>['get']> | undefined;
    const snapshot = () => (scrape ??= fleet.get(deadlineMs).finally(() => setImmediate(() => (scrape = undefined))));

    if (queues) {
      new Gauge({
        name: 'cascade_queue_jobs',
        help: 'Jobs (batches) in a queue by state, as last read from Redis (see cascade_redis_read_age_seconds)',
        labelNames: ['queue', 'state'],
        registers: [registry],
        async collect() {
          const { value } = await snapshot();
          if (!value) return;
          this.reset();
          for (const { name, counts } of value.queues) for (const state of DEPTH_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
        },
      });
      new Gauge({
        name: 'cascade_queue_oldest_waiting_seconds',
        help: 'Age of the job (batch) that has waited longest in a queue, since it was added; 0 when none waits (as last read from Redis)',
        labelNames: ['queue'],
        registers: [registry],
        async collect() {
          const { value } = await snapshot();
          if (!value) return;
          this.reset();
          for (const { name, oldestWaitingAt } of value.queues)
            this.set({ queue: name }, oldestWaitingAt === undefined ? 0 : Math.max(0, now() - oldestWaitingAt) / 1000);
        },
      });
    }
    if (scheduleSuccesses) {
      new Gauge({
        name: 'cascade_schedule_last_success_timestamp_seconds',
        help: 'When the newest run of each schedule finished (merged), in seconds since the epoch, as last read from Redis',
        labelNames: ['schedule'],
        registers: [registry],
        async collect() {
          const { value } = await snapshot();
          if (!value) return;
          this.reset();
          for (const [schedule, ms] of Object.entries(value.lastSuccess)) this.set({ schedule }, ms / 1000);
        },
      });
    }
    new Gauge({
      name: 'cascade_redis_up',
      help: '1 when this scrape read the queue and schedule gauges from Redis, 0 when it served the last values read',
      registers: [registry],
      async collect() {
        this.set((await snapshot()).fresh ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cascade_redis_read_age_seconds',
      help: 'Age of the queue and schedule gauges: seconds since they were last read from Redis (since start when never); 0 when read by this scrape',
      registers: [registry],
      async collect() {
        const { okAt, fresh } = await snapshot();
        this.set(fresh ? 0 : (now() - (okAt ?? startedAt)) / 1000);
      },
    });
  }

  /** Record one finished batch of `stage` (the StageWorker `onBatch` hook). */
  onBatch(stage: string, stats: StageStats, errorsByKind: Record<string, number>, cost?: PartCost): void {
    if (cost) this.costSeconds.inc({ stage, worker_class: cost.workerClass }, cost.seconds);
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

  /** Record how one scheduled firing ended (the RunScheduler `onFiring` hook). */
  onFiring(schedule: string, outcome: FiringOutcome): void {
    this.firings.inc({ schedule, outcome });
  }

  /** Record how one run ended in this process's merge role (the MergeWorker `onRunFinished` hook); `schedule` is '' for unscheduled runs. */
  onRunFinished(schedule: string, outcome: 'merged' | 'failed'): void {
    this.runs.inc({ schedule, outcome });
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Whether a process can do its work now; `reasons` says what is missing when not. */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

export interface HealthOptions {
  /** Answers `GET /readyz` (200 when ready, else 503 with the reasons); without it /readyz is 404. */
  readiness?: () => Promise<Readiness>;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics`, `GET /healthz` (liveness: the event loop answers) and, given a
 * readiness check, `GET /readyz` on `port` (0 = any free port) and `host`.
 */
export async function serveMetrics(metrics: CascadeMetrics, port: number, host = '0.0.0.0', health: HealthOptions = {}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const text = (status: number, body: string) => res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    // Liveness only: answering at all proves the event loop runs. Redis being down is a
    // readiness matter — restarting the process would not bring Redis back.
    if (req.method === 'GET' && path === '/healthz') return void text(200, 'ok\n');
    if (req.method === 'GET' && path === '/readyz' && health.readiness) {
      health.readiness().then(
        (r) => text(r.ready ? 200 : 503, r.ready ? 'ready\n' : `not ready: ${r.reasons.join('; ')}\n`),
        (err: Error) => text(503, `not ready: ${err.message}\n`),
      );
      return;
    }
    if (req.method !== 'GET' || path !== '/metrics') return void text(404, 'not found: try GET /metrics, /healthz or /readyz\n');
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: Error) => text(500, `metrics collection failed: ${err.message}\n`),
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
