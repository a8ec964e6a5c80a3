/**
 * Measured cost of jobs that share one process. A stage job's cost is the machine time it used:
 * core-seconds of CPU on a CPU worker (user + system, every thread: sharp's decodes, inference
 * threads), seconds of the accelerator's wall clock on a GPU worker. On a CPU worker each
 * inference call is charged the CPU its pool thread used (measured on that thread), and only the
 * rest of the process's CPU is shared among the jobs running, by the work each has in flight: a
 * tiny model's job running beside a slow model's call is not charged for that call. The charges
 * always add up to the process's measured time while jobs ran (less the inference threads' time
 * outside calls: model loading), and a job alone in its process gets exactly its own.
 */
import type { WorkerClass } from '../../config/schema.js';
import { InferencePool } from '../inference/inference-pool.js';
import { threadCpuSeconds } from '../inference/thread-cpu.js';

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
 * Charges a process clock to the jobs running at each moment. Time measured on a thread doing one
 * job's work (an inference call's thread: `attributed`, the clock of those threads, and charge())
 * is that job's alone. The rest is shared in proportion to the work each job has in flight
 * (decodes and inference calls, reported through work()), or equally while none reports any: a
 * stage waiting on its inference queue while another decodes is not charged for the decoding.
 */
export class CostMeter {
  private readonly running = new Map<number, { seconds: number; weight: number }>();
  private last: number;
  private nextId = 0;

  /**
   * `attributed`: the part of `clock` that charge() hands out directly (the inference threads'
   * CPU so far); it is taken off the clock before sharing, so no second of it is charged twice.
   */
  constructor(
    private readonly clock: ResourceClock,
    private readonly attributed?: ResourceClock,
  ) {
    this.last = this.shared();
  }

  /** Whether charge() applies: the clock's attributed part is measured apart. */
  get measuresCalls(): boolean {
    return this.attributed !== undefined;
  }

  /** Charge a job time measured on a thread that did only its work (an inference call's CPU); ignored unless measuresCalls. */
  charge(slice: MeterSlice, seconds: number): void {
    const job = this.running.get(slice.id);
    if (job && this.attributed && seconds > 0) job.seconds += seconds;
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
  private shared(): number {
    return this.clock() - (this.attributed?.() ?? 0);
  }

  private settle(): void {
    const now = this.shared();
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
  // Only CPU is measured per thread: a GPU worker pays for the accelerator's wall clock.
  const threads = threadCpuMeasurable() ? () => InferencePool.threadCpuSeconds() : undefined;
  return { cpu: new CostMeter(clockOf('cpu'), threads), gpu: new CostMeter(clockOf('gpu')) };
}

/** Whether this platform lets a thread's CPU be read (Linux); elsewhere the meter shares the whole clock by work in flight. */
function threadCpuMeasurable(): boolean {
  return threadCpuSeconds('self') !== null;
}
