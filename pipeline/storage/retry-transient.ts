/**
 * Retrying a store call through short outages, on top of the client's own retries. Which
 * failures are transient is the store's call (StoreConnection.isTransient).
 */

/** How long reads and part writes keep retrying transient failures on top of the client's own retries. */
export const DEFAULT_TRANSIENT_RETRY_MS = 60_000;

/**
 * Calls `op` until it succeeds, fails for good, or transient failures have lasted `budgetMs`.
 * The S3 SDK retries too, but its client-wide retry quota (500 tokens, 10 per retried connection
 * error) empties within seconds of an outage, after which each call fails at once: without this
 * loop a 10 s outage failed every attempt of a batch and left the run waiting forever.
 */
export async function retryTransient<T>(op: () => Promise<T>, budgetMs: number, isTransient: (err: unknown) => boolean): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      return await op();
    } catch (err) {
      if (!isTransient(err) || Date.now() + delay > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
