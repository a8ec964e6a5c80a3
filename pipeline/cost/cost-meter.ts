/**
 * Measured cost of jobs that share one process. A stage job's cost is the machine time it used:
 * core-seconds of CPU on a CPU worker (user + system, every thread: sharp's decodes, inference
 * threads), seconds of the accelerator's wall clock on a GPU worker. The process clock cannot tell
 * concurrent jobs apart, so each delta between two events (a job starting or ending) is shared
 * equally among the jobs running then: the shares always add up to the process's measured time
 * while jobs ran, and a job alone in its process gets exactly its own.
 */
import type { WorkerClass } from '../../config/schema.js';

/** A monotonic clock in seconds of the resource being paid for. */
export type ResourceClock = () => number;

/** Core-seconds of CPU this process has used so far (every thread). */
export const processCpuSeconds: ResourceClock = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Wall-clock seconds (a GPU worker pays for the accelerator's time, busy or not). */
export const wallSeconds: ResourceClock = () => performance.now() / 1000;

/** The clock a worker class is priced by. */
export function clockOf(workerClass: WorkerClass): ResourceClock {
  return workerClass === 'gpu' ? wallSeconds : processCpuSeconds;
}

/** One job's share of the process clock, from begin() to end(). */
export interface MeterSlice {
  readonly id: number;
}

/**
 * Shares a process clock among the jobs running at each moment, in proportion to the work each has
 * in flight (decodes and inference calls, reported through work()), or equally while none reports
 * any: a stage waiting on its inference queue while another decodes is not charged for the decoding.
 */
export class CostMeter {
  private readonly running = new Map<number, { seconds: number; weight: number }>();
  private last: number;
  private nextId = 0;

  constructor(private readonly clock: ResourceClock) {
    this.last = clock();
  }

  /** Start charging a job. */
  begin(): MeterSlice {
    this.settle();
    const id = this.nextId++;
    this.running.set(id, { seconds: 0, weight: 0 });
    return { id };
  }

  /** A job starts (weight > 0) or ends (weight < 0) a piece of work: a decode counts 1, an inference call its threads. */
  work(slice: MeterSlice, weight: number): void {
    this.settle();
    const job = this.running.get(slice.id);
    if (job) job.weight = Math.max(0, job.weight + weight);
  }

  /** Stop charging a job; returns its share of the clock in seconds. */
  end(slice: MeterSlice): number {
    this.settle();
    const job = this.running.get(slice.id);
    if (job === undefined) throw new Error(`cost meter: slice ${slice.id} ended twice or never began`);
    this.running.delete(slice.id);
    return job.seconds;
  }

  /** Jobs being charged now (for tests). */
  get active(): number {
    return this.running.size;
  }

  // Time that passed with no job running (idle polls, GC between jobs) is nobody's.
  private settle(): void {
    const now = this.clock();
    const delta = Math.max(0, now - this.last);
    this.last = now;
    if (this.running.size === 0) return;
    let total = 0;
    for (const job of this.running.values()) total += job.weight;
    for (const job of this.running.values()) job.seconds += total > 0 ? (delta * job.weight) / total : delta / this.running.size;
  }
}

/** One meter per worker class, to be shared by every stage worker of a process. */
export function processMeters(): Record<WorkerClass, CostMeter> {
  return { cpu: new CostMeter(clockOf('cpu')), gpu: new CostMeter(clockOf('gpu')) };
}
