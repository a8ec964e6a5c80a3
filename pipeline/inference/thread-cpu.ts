/**
 * CPU time of single threads, from Linux's per-thread scheduler statistics (nanoseconds, unlike
 * the tick-granular /proc/<pid>/stat). The cost meter charges an inference call the CPU its
 * thread used, instead of guessing it from what was in flight. Elsewhere (no /proc) every
 * reading is null and the meter shares the process clock as before.
 */
import { readFileSync, readlinkSync } from 'node:fs';

/** Seconds of CPU the thread `tid` of this process has used (null where it cannot be read). */
export function threadCpuSeconds(tid: number | 'self'): number | null {
  try {
    const path = tid === 'self' ? '/proc/thread-self/schedstat' : `/proc/self/task/${tid}/schedstat`;
    const ns = Number(readFileSync(path, 'latin1').split(' ', 1)[0]);
    return Number.isFinite(ns) ? ns / 1e9 : null;
  } catch {
    return null;
  }
}

/** The kernel's id of the calling thread (null where it cannot be read). */
export function currentThreadId(): number | null {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : null;
  } catch {
    return null;
  }
}

/**
 * The CPU used by a set of threads so far, read live. A thread that has exited keeps its last
 * reading, so the total never falls back (the meter takes it off the process clock).
 */
export class ThreadGroupCpu {
  private readonly last = new Map<number, number>();
  private readonly seen = new Set<number>();
  /** CPU of the threads that have exited (no longer read). */
  private exited = 0;

  /** Count thread `tid` from now on (its CPU so far included); a thread already counted is ignored. */
  add(tid: number): void {
    if (this.seen.has(tid)) return;
    this.seen.add(tid);
    this.last.set(tid, threadCpuSeconds(tid) ?? 0);
  }

  /** Seconds of CPU the threads have used, each read now. */
  seconds(): number {
    let total = this.exited;
    for (const [tid, before] of this.last) {
      const now = threadCpuSeconds(tid);
      if (now === null) {
        this.exited += before;
        total += before;
        this.last.delete(tid);
        continue;
      }
      const s = Math.max(now, before);
      this.last.set(tid, s);
      total += s;
    }
    return total;
  }
}
