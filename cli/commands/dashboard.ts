/**
 * `cascade dashboard`: bull-board over every cascade queue under the prefix, and a Runs page
 * (`/runs`, cli/runs-page.ts) with every run's view as `cascade status` shows it. Queues are found
 * in Redis (BullMQ keeps a `<prefix>:<queue>:meta` hash per queue), so stages named in any
 * config appear without this process loading one; the list is refreshed while it runs.
 * Safe by default: it listens on 127.0.0.1, is read-only, and needs a token on any other
 * interface (cli/dashboard-access.ts).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express from 'express';
import type { Redis } from 'ioredis';
import { MERGE_QUEUE } from '../../queue/jobs.js';
import { quiet } from '../../queue/cascade-queues.js';
import { describeListing } from '../../producers/describe-listing.js';
import { readRecentRunViews } from '../../queue/read-run-views.js';
import { type ConnectionLog, connectRedisChecked, redisTimeoutMs, watchRedis } from '../../queue/redis-connection.js';
import { RunTracker } from '../../queue/run-tracker.js';
import { SCHEDULES_QUEUE } from '../../workers/run-scheduler.js';
import { checkDashboardHost, type DashboardAccess, dashboardAccess, dashboardGuard } from '../dashboard-access.js';
import { fleetSettings } from '../fleet-settings.js';
import { createLogger, logFn } from '../logger.js';
import { redactUrl } from '../redact.js';
import { renderRunsPage } from '../runs-page.js';

export interface Dashboard {
  /** The interface it listens on. */
  address: string;
  port: number;
  /** Names of the queues shown. */
  queueNames(): string[];
  /** Look for new queues now (also done every `refreshMs`). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

/** Queue names under `prefix` that BullMQ has created (each has a meta hash). */
export async function discoverQueues(redis: Redis, prefix: string): Promise<string[]> {
  const names = new Set<string>([MERGE_QUEUE, SCHEDULES_QUEUE]);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*:meta`, 'COUNT', 1000);
    for (const key of keys) names.add(key.slice(prefix.length + 1, -':meta'.length));
    cursor = next;
  } while (cursor !== '0');
  return [...names].sort();
}

/** The interface the dashboard listens on unless told otherwise: this machine only. */
export const DEFAULT_DASHBOARD_HOST = '127.0.0.1';

/** Path of the Runs page, beside bull-board's root. */
export const RUNS_PATH = '/runs';
// Runs listed on the page unless `?limit=` says otherwise, and how often it reloads itself.
const RUNS_LIMIT = 50;
const RUNS_REFRESH_SECONDS = 10;

/** The `?limit=` of a Runs page request: 1..1000, else the default. */
function runsLimit(raw: unknown): number {
  const n = typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : RUNS_LIMIT;
}

/** Serve bull-board for the queues under `prefix` on `port` (0 = any free port); read-only unless `access` allows writes. */
export async function startDashboard(o: {
  redisUrl: string;
  prefix: string;
  port: number;
  host?: string;
  refreshMs?: number;
  access?: DashboardAccess;
  /** Where Redis outages are reported, one line each; none by default. */
  log?: ConnectionLog;
  /** How long the Runs page waits for Redis before answering 503 (default CASCADE_REDIS_TIMEOUT_MS, else 10 s). */
  runsTimeoutMs?: number;
}): Promise<Dashboard> {
  const access = o.access ?? { allowWrites: false };
  const host = o.host ?? DEFAULT_DASHBOARD_HOST;
  checkDashboardHost(host, access);
  const redis = await connectRedisChecked(o.redisUrl);
  // A Redis that goes away or rejects a rotated password is one line, never ioredis' raw error
  // (its AUTH arguments hold the password): the watch reports it, the queues stay quiet.
  const watch = watchRedis(redis, o.redisUrl, o.log ?? (() => {}));
  const queues = new Map<string, Queue>();
  const serverAdapter = new ExpressAdapter().setBasePath('/');
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: `Cascade (${o.prefix})`, miscLinks: [{ text: 'Runs', url: RUNS_PATH }] } },
  });
  const tracker = new RunTracker(redis, o.prefix);
  const refresh = async () => {
    const names = await discoverQueues(redis, o.prefix);
    const added = names.filter((n) => !queues.has(n));
    // A viewer leaves the queues' meta (e.g. their event stream cap, queue/jobs.ts EVENTS_MAX_LEN) as their owners wrote it.
    for (const name of added) queues.set(name, quiet(new Queue(name, { connection: redis, prefix: o.prefix, skipMetasUpdate: true })));
    // bull-board hides its action buttons on read-only queues; the guard refuses the requests.
    if (added.length > 0) board.replaceQueues([...queues.values()].map((q) => new BullMQAdapter(q, { readOnlyMode: !access.allowWrites })));
  };
  await refresh();
  const timer = setInterval(() => void refresh().catch(() => undefined), o.refreshMs ?? 10_000);
  const app = express();
  app.use(dashboardGuard(access));
  const runsTimeoutMs = o.runsTimeoutMs ?? redisTimeoutMs();
  app.get(RUNS_PATH, async (req, res) => {
    let deadline: NodeJS.Timeout | undefined;
    try {
      // Commands wait for a Redis that is away (the workers' setting); the page answers anyway.
      const late = new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error('timed out')), runsTimeoutMs);
      });
      const runs = await Promise.race([readRecentRunViews(tracker, runsLimit(req.query.limit), new Date(), describeListing), late]);
      res
        .type('html')
        .set('Cache-Control', 'no-store')
        .send(renderRunsPage(runs, { prefix: o.prefix, refreshSeconds: RUNS_REFRESH_SECONDS, now: new Date() }));
    } catch {
      // The watch above logs the outage in one line; the page says so without Redis' raw error.
      res.status(503).type('text/plain').send('cascade: cannot read the runs from Redis now; see the dashboard log\n');
    } finally {
      clearTimeout(deadline);
    }
  });
  app.use('/', serverAdapter.getRouter());
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(o.port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    address,
    port,
    queueNames: () => [...queues.keys()].sort(),
    refresh,
    close: async () => {
      clearInterval(timer);
      watch.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
      redis.disconnect();
    },
  };
}

/** Run the dashboard until SIGTERM/SIGINT. */
export async function dashboardCommand(o: {
  port: number;
  host?: string;
  config?: string;
  prefix?: string;
  allowWrites?: boolean;
  allowAnonymous?: boolean;
}): Promise<void> {
  const logger = createLogger();
  const access = dashboardAccess(o.allowWrites === true, process.env, o.allowAnonymous === true);
  const host = o.host ?? DEFAULT_DASHBOARD_HOST;
  // Before reading any config or connecting: an exposed dashboard without a token is a usage error.
  checkDashboardHost(host, access);
  const { redisUrl, prefix } = await fleetSettings(o);
  const dashboard = await startDashboard({ redisUrl, prefix, port: o.port, host, access, log: logFn(logger) });
  const mode = access.allowWrites ? 'writes allowed with the token' : access.token ? 'read-only, token required' : 'read-only';
  logger.info(`dashboard on http://${host}:${dashboard.port}/ (${mode}) for ${redactUrl(redisUrl)} (prefix ${prefix}): ${dashboard.queueNames().join(', ')}`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => process.once('SIGTERM', resolve).once('SIGINT', resolve));
  logger.info(`${signal}: stopping the dashboard`);
  await dashboard.close();
}
