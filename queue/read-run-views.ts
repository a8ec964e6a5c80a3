/** Views of the most recently started runs, read from Redis through the run tracker (`cascade status`, the dashboard's Runs page). */
import { buildRunView, type DescribeListing, type RunView } from './run-view.js';
import type { RunTracker } from './run-tracker.js';

/** The views of the `limit` most recently started runs, newest first (listings worded by `describeListing`, see buildRunView). */
export async function readRecentRunViews(tracker: RunTracker, limit: number, now = new Date(), describeListing?: DescribeListing): Promise<RunView[]> {
  const ids = await tracker.runIds();
  const all = await Promise.all(ids.map((id) => tracker.progress(id)));
  return all
    .filter((p) => p !== null)
    .map((p) => buildRunView(p, now, describeListing))
    .sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''))
    .slice(0, limit);
}
