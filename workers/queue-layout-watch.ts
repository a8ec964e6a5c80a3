/**
 * A stage worker consumes one queue layout: `queues.shards` BullMQ queues per stage. A run queued
 * on another layout (its spec's `queueShards`) is never seen by it, so without this check the
 * run would wait forever without a word. At start a worker refuses to serve while such a run is
 * unmerged (a fleet whose configs disagree is the likely cause); once running, it logs one error
 * line per such run submitted later, and keeps serving the runs it can.
 */
import { shardMismatch } from '../queue/queue-shards.js';
import type { RunTracker } from '../queue/run-tracker.js';
import type { WorkerLog } from './stage-worker.js';

/** How often a running worker looks for newly submitted runs on another layout. */
export const LAYOUT_CHECK_MS = 15_000;

/** Finds the unmerged runs under a prefix whose queue layout differs from a worker's; each run is read once. */
export class QueueLayoutWatch {
  /** Runs already judged: a run's layout never changes, so neither does the verdict. */
  private readonly judged = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<unknown> | undefined;

  constructor(private readonly o: { tracker: RunTracker; shards: number; log: WorkerLog; intervalMs?: number }) {}

  /** One line per unmerged run not judged before that this worker's layout never serves. */
  async newMismatches(): Promise<string[]> {
    const lines: string[] = [];
    for (const runId of await this.o.tracker.runIds()) {
      if (this.judged.has(runId)) continue;
      const run = await this.o.tracker.specAndMerged(runId);
      if (!run) continue;
      this.judged.add(runId);
      const mismatch = run.merged ? null : shardMismatch(run.spec, this.o.shards);
      if (mismatch) lines.push(mismatch);
    }
    return lines;
  }

  /**
   * Every `intervalMs`, log each newly found mismatch as one error line. A failed look is only a
   * debug line, tried again next time: it fails when Redis does, which the connection's own
   * watcher already reports once (a password rotation would otherwise add a warning per look).
   */
  start(): void {
    this.timer = setInterval(() => {
      // One look at a time: two would read the same new run and log it twice.
      this.checking ??= this.newMismatches()
        .then(
          (lines) => lines.forEach((line) => this.o.log(line, { level: 'error' })),
          (err: Error) => this.o.log(`cannot check the runs' queue layouts: ${err.message}`, { level: 'debug' }),
        )
        .finally(() => (this.checking = undefined));
    }, this.o.intervalMs ?? LAYOUT_CHECK_MS);
    this.timer.unref();
  }

  /** Stop looking (waits for a look in progress). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.checking;
  }
}
