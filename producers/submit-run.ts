/**
 * Submitting a run: record its spec, list the source, and enqueue batches of refs on the
 * first stage's queue with addBulk and deterministic job ids. Resubmitting adds nothing
 * twice: a finished listing is not repeated, an interrupted one resumes, skipping batches
 * that are queued (same job id) or already done.
 */
import { createHash } from 'node:crypto';
import type { CascadeQueues } from '../queue/cascade-queues.js';
import { partId, type RunSpec, type StageJob } from '../queue/jobs.js';
import type { RunTracker } from '../queue/run-tracker.js';

export interface SubmitOptions {
  spec: RunSpec;
  refs: AsyncIterable<string>;
  tracker: RunTracker;
  queues: CascadeQueues;
  /** Batches per addBulk call. */
  jobsPerBulk?: number;
  onListed?: (images: number) => void;
}

export interface SubmitResult {
  runId: string;
  images: number;
  batches: number;
  /** True when the run had already been fully submitted and nothing was added. */
  alreadySubmitted: boolean;
}

/** A stable run id for the same source, output and cascade settings. */
export function deriveRunId(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** Record the run and enqueue all of its batches on the first stage. */
export async function submitRun(o: SubmitOptions): Promise<SubmitResult> {
  const { spec, tracker, queues } = o;
  const created = await tracker.create(spec);
  if (!created) {
    const existing = await tracker.progress(spec.runId);
    if (existing?.listed) return { runId: spec.runId, images: existing.total ?? 0, batches: existing.batches, alreadySubmitted: true };
  }
  const first = spec.stages[0]!.name;
  const jobsPerBulk = o.jobsPerBulk ?? 100;
  let pending: StageJob[] = [];
  let batchRefs: string[] = [];
  let images = 0;
  let batches = 0;

  const flush = async () => {
    // On a resumed submission, batches whose first stage already finished must not run again.
    const todo = created ? pending : await filterNotDone(pending, tracker);
    await queues.addStageJobs(first, todo);
    await tracker.setListing(spec.runId, images, batches);
    o.onListed?.(images);
    pending = [];
  };
  const closeBatch = () => {
    pending.push({ runId: spec.runId, batch: batches, stage: 0, items: batchRefs.map((ref, pos) => ({ ref, pos })) });
    batches += 1;
    batchRefs = [];
  };

  for await (const ref of o.refs) {
    batchRefs.push(ref);
    images += 1;
    if (batchRefs.length === spec.batchSize) closeBatch();
    if (pending.length >= jobsPerBulk) await flush();
  }
  if (batchRefs.length > 0) closeBatch();
  await flush();

  if (await tracker.finishListing(spec.runId, images, batches)) await queues.queueMerge(spec.runId, tracker);
  return { runId: spec.runId, images, batches, alreadySubmitted: false };
}

async function filterNotDone(jobs: StageJob[], tracker: RunTracker): Promise<StageJob[]> {
  const done = await Promise.all(jobs.map((j) => tracker.isPartDone(j.runId, partId(j.batch, 0))));
  return jobs.filter((_, i) => !done[i]);
}
