/**
 * Readiness of a `cascade worker` process, for `/readyz`: Redis answers, and the models of the
 * runs in flight that this worker's stages serve are open (hashed, loaded and probed), so a new
 * pod reports ready only once it can label without a model load first. Models open lazily per
 * run; this loads those of the runs already queued once at start (Kubernetes' startup probe is
 * sized for it), and a run submitted later loads its models with its first batch.
 */
import type { Redis } from 'ioredis';
import type { ModelCache } from '../pipeline/models/model-cache.js';
import type { RunTracker } from '../queue/run-tracker.js';
import type { Readiness } from './metrics.js';
import type { WorkerLog } from './stage-worker.js';

/** How long the readiness check waits for Redis' PONG. */
export const PING_DEADLINE_MS = 500;

/** Undefined when `redis` is connected and answers PING within `deadlineMs`, else why not. */
export async function redisProblem(redis: Redis, deadlineMs = PING_DEADLINE_MS): Promise<string | undefined> {
  // No command while disconnected: it would wait in ioredis' offline queue for as long as Redis is down.
  if (redis.status !== 'ready') return `redis ${redis.status}`;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`redis did not answer PING within ${deadlineMs} ms`), deadlineMs)));
  try {
    return await Promise.race([redis.ping().then(() => undefined), late]);
  } catch (err) {
    return `redis: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Open the models that the unfinished runs under `tracker` pin for `stages`, newest run first,
 * at most `limit` of them (the cache's capacity: more would evict the first). A model this
 * worker refuses is logged and skipped: its batches fail with the reason, as they would anyway.
 * Resolves with the number of models opened.
 */
export async function openRunModels(o: { tracker: RunTracker; models: ModelCache; stages: readonly string[]; limit: number; log: WorkerLog }): Promise<number> {
  const runs = [];
  for (const runId of await o.tracker.runIds()) {
    const p = await o.tracker.progress(runId);
    if (p && !p.completedAt && !p.mergedAt) runs.push(p);
  }
  runs.sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''));
  let opened = 0;
  for (const { spec } of runs) {
    for (const stage of spec.stages) {
      if (!o.stages.includes(stage.name) || opened >= o.limit) continue;
      try {
        const lease = await o.models.acquire(stage.name, stage.model, spec.numerics, spec.probeTolerance, spec.runId);
        lease.release();
        opened++;
      } catch (err) {
        o.log(`stage ${stage.name}: cannot open the model of run ${spec.runId} at start: ${(err as Error).message}`, {
          level: 'warn',
          stage: stage.name,
          runId: spec.runId,
        });
      }
    }
  }
  return opened;
}

/** A worker's readiness: models opened at start (or failed to), Redis answering, not stopping. */
export class WorkerHealth {
  private modelsLoaded = false;
  private stopping = false;

  constructor(private readonly redis: Redis) {}

  /** Mark the start-up model loading done (whatever its outcome: refused models are job errors). */
  modelsReady(): void {
    this.modelsLoaded = true;
  }

  /** Report not ready from now on: the process is draining after a signal. */
  stop(): void {
    this.stopping = true;
  }

  /** The current readiness with every reason it is not ready. */
  async check(): Promise<Readiness> {
    const reasons: string[] = [];
    if (this.stopping) reasons.push('stopping');
    if (!this.modelsLoaded) reasons.push('loading the models of the runs in flight');
    const redis = await redisProblem(this.redis);
    if (redis) reasons.push(redis);
    return { ready: reasons.length === 0, reasons };
  }
}
