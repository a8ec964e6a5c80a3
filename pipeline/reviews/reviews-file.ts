/**
 * `reviews.jsonl` under a run's output location: one ReviewRow per reviewed image, in manifest
 * order. Read and written through the run's ObjectStore, so a run in s3:// works the same.
 */
import { REVIEWS_KEY } from '../results/output-layout.js';
import { isObjectNotFound, type ObjectStore, readLines } from '../storage/object-store.js';
import { ReviewRow } from './review-row.js';

/** The stored reviews of a run (none when it has no reviews.jsonl); a line that is not a review throws, naming it. */
export async function readReviews(store: ObjectStore): Promise<ReviewRow[]> {
  let input: Awaited<ReturnType<ObjectStore['getStream']>>;
  try {
    input = await store.getStream(REVIEWS_KEY);
  } catch (err) {
    if (isObjectNotFound(err)) return [];
    throw err;
  }
  const rows: ReviewRow[] = [];
  let n = 0;
  for await (const text of readLines(input)) {
    n++;
    if (text.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`${REVIEWS_KEY} line ${n} in ${store.describe()} is not JSON: ${(err as Error).message}`);
    }
    const parsed = ReviewRow.safeParse(json);
    if (!parsed.success) throw new Error(`${REVIEWS_KEY} line ${n} in ${store.describe()} is not a review: ${parsed.error.issues[0]?.message}`);
    rows.push(parsed.data);
  }
  return rows;
}

/** The text of reviews.jsonl for these rows. */
export function reviewsJsonl(rows: readonly ReviewRow[]): string {
  return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
}
