/**
 * One manifest shard's batches (output-layout.ts `shardBatchRange`): their chains of parts read
 * in order, their rows, and the shard's partial summary (everything the run's summary folds),
 * stored beside the shard so a merge that finds it written folds the partial instead of the parts.
 */
import { z } from 'zod';
import { AuditPart, countAgreement } from '../audit/audit-part.js';
import { addConfidence, type ConfidenceHistogram, emptyHistogram } from '../plots/histogram.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { addPartToTotals, addStageTotals, emptyStageTotals, type ManifestRow, mergeBatchRows, ResultPart, StageTotals } from './manifest.js';
import { auditKey, manifestShardSummaryKey, partKey, warmupPartKey } from './output-layout.js';

/** What the run's summary folds, over one shard's batches (or, folded, over the run). */
export const ShardSummary = z.object({
  images: z.number().int().nonnegative(),
  /** Error rows by kind, in order of first occurrence (the summary keeps that order). */
  errorsByKind: z.record(z.string(), z.number().int()),
  stages: z.array(StageTotals),
  /** The confidence histogram's counts per stage (thresholds are the run's, set when it is drawn: histogramOf). */
  histogram: z.object({
    bins: z.number().int().positive(),
    stages: z.array(z.object({ name: z.string(), threshold: z.number().nullable(), counts: z.array(z.number().int()), forwarded: z.array(z.number().int()) })),
  }),
  /** Audit parts of the batches whose first-stage part promised audits (zero on runs without audits). */
  audit: z.object({ sampled: z.number().int(), agreeing: z.number().int() }),
  /** Images each stage inferred in the warm-up lane, and the warm-up's images. */
  warmupInferred: z.array(z.number().int()),
  warmupImages: z.number().int().nonnegative(),
});
export type ShardSummary = z.infer<typeof ShardSummary>;

/** A written shard's record: whose, which batches, and its partial summary. */
export const ShardRecord = z.object({
  runId: z.string(),
  shard: z.number().int().nonnegative(),
  from: z.number().int().nonnegative(),
  to: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  summary: ShardSummary,
});
export type ShardRecord = z.infer<typeof ShardRecord>;

/** The stages a summary counts, by name (histograms are drawn by name). */
type StageNames = readonly string[];

/** An empty partial summary. */
export function emptyShardSummary(stages: StageNames): ShardSummary {
  return {
    images: 0,
    errorsByKind: {},
    stages: emptyStageTotals(stages.length),
    histogram: emptyHistogram(stages.map((name) => ({ name, threshold: null }))),
    audit: { sampled: 0, agreeing: 0 },
    warmupInferred: stages.map(() => 0),
    warmupImages: 0,
  };
}

/** Fold a later shard's partial summary into `into` (in place); shards folded in order give the same figures wherever each was folded. */
export function addShardSummary(into: ShardSummary, more: ShardSummary): void {
  into.images += more.images;
  for (const [kind, n] of Object.entries(more.errorsByKind)) into.errorsByKind[kind] = (into.errorsByKind[kind] ?? 0) + n;
  addStageTotals(into.stages, more.stages);
  into.histogram.stages.forEach((h, i) => {
    const m = more.histogram.stages[i]!;
    m.counts.forEach((n, b) => (h.counts[b]! += n));
    m.forwarded.forEach((n, b) => (h.forwarded[b]! += n));
  });
  into.audit.sampled += more.audit.sampled;
  into.audit.agreeing += more.audit.agreeing;
  more.warmupInferred.forEach((n, i) => (into.warmupInferred[i]! += n));
  into.warmupImages += more.warmupImages;
}

/** The run's confidence histogram from a folded summary, with each stage's threshold as drawn. */
export function histogramOf(summary: ShardSummary, stages: ReadonlyArray<{ name: string; threshold?: number | null }>): ConfidenceHistogram {
  const h = emptyHistogram(stages.map((s) => ({ name: s.name, threshold: s.threshold ?? null })));
  h.stages.forEach((s, i) => {
    s.counts = [...summary.histogram.stages[i]!.counts];
    s.forwarded = [...summary.histogram.stages[i]!.forwarded];
  });
  return h;
}

/** A shard's batches are not all final yet (a part not counted or not written): try again later. */
export class ShardNotReadyError extends Error {}

/** Which parts of a shard's batches are counted, by lane and stage: a merge while the run labels reads only those. */
export type CountedParts = (lane: 'stage' | 'warmup' | 'audit', stage: number) => Promise<(batch: number) => boolean>;

/** One batch's chains of parts: the ordinary one and, in a self-calibrating run, its warm-up lane's. */
export interface BatchParts {
  batch: number;
  parts: ResultPart[];
  warmup: ResultPart[];
}

/**
 * Reads a shard's batches in order, a window ahead. With `counted`, a part not yet counted (or
 * not found) ends the read with ShardNotReadyError: a part is final once counted, not once written.
 */
export async function* readShardBatches(
  store: ObjectStore,
  runId: string,
  range: { from: number; to: number },
  counted?: CountedParts,
): AsyncGenerator<BatchParts> {
  const gates = new Map<string, Promise<(batch: number) => boolean>>();
  const isCounted = async (lane: 'stage' | 'warmup' | 'audit', stage: number, batch: number) => {
    if (!counted) return true;
    const key = `${lane}${stage}`;
    if (!gates.has(key)) gates.set(key, counted(lane, stage));
    return (await gates.get(key)!)(batch);
  };
  const readPart = async (batch: number, stage: number, lane: 'stage' | 'warmup') => {
    const keyOf = lane === 'stage' ? partKey : warmupPartKey;
    if (!(await isCounted(lane, stage, batch))) throw new ShardNotReadyError(`${keyOf(batch, stage)} is not counted yet`);
    let part: ResultPart;
    try {
      part = await readJson(store, keyOf(batch, stage), ResultPart);
    } catch (err) {
      if (counted && isObjectNotFound(err)) throw new ShardNotReadyError(`${keyOf(batch, stage)} is not written yet`);
      throw err;
    }
    // Another run's part at this location is never input: it would mix two runs' rows.
    if (part.runId !== runId)
      throw new Error(`${keyOf(batch, stage)} in ${store.describe()} belongs to run ${part.runId}, not ${runId}: two runs share this output location`);
    return part;
  };
  // A batch's parts form a chain: stage k wrote a part only if stage k-1 forwarded images. A
  // self-calibrating run's batch with warm-up images has a second chain, the warm-up lane's.
  const readBatch = async (batch: number): Promise<BatchParts> => {
    const parts = [await readPart(batch, 0, 'stage')];
    while (parts[parts.length - 1]!.stats.forwarded > 0) parts.push(await readPart(batch, parts.length, 'stage'));
    const warmup: ResultPart[] = [];
    if (parts[0]!.warmup) {
      warmup.push(await readPart(batch, 0, 'warmup'));
      while (warmup[warmup.length - 1]!.stats.forwarded > 0) warmup.push(await readPart(batch, warmup.length, 'warmup'));
    }
    return { batch, parts, warmup };
  };
  const window = 16;
  const pending: Array<Promise<BatchParts>> = [];
  // A read that fails while an earlier batch is awaited is reported when its turn comes; until
  // then it must not count as an unhandled rejection (nor outlive a read that failed first).
  const readAhead = (batch: number) => {
    const p = readBatch(batch);
    p.catch(() => undefined);
    pending.push(p);
  };
  for (let next = range.from; next < Math.min(range.from + window, range.to); next++) readAhead(next);
  for (let batch = range.from; batch < range.to; batch++) {
    const read = await pending.shift()!;
    if (batch + window < range.to) readAhead(batch + window);
    yield read;
  }
}

/** Fold one batch (its parts and merged rows) into a shard's partial summary (in place). */
export function foldBatch(summary: ShardSummary, { parts: ordinary, warmup }: BatchParts, rows: readonly ManifestRow[]): void {
  for (const w of warmup) summary.warmupInferred[w.stage]! += w.stats.images - w.stats.errors;
  summary.warmupImages += warmup[0]?.stats.images ?? 0;
  summary.images += rows.length;
  for (const row of rows) {
    if (row.error) summary.errorsByKind[row.error.kind] = (summary.errorsByKind[row.error.kind] ?? 0) + 1;
    else if (row.stage !== null && row.confidence !== null) addConfidence(summary.histogram, row.stage, row.confidence);
  }
  for (const part of [...ordinary, ...warmup]) {
    addPartToTotals(summary.stages, part);
    for (const c of part.forwardedConfidence ?? []) addConfidence(summary.histogram, part.stageName, c, true);
  }
}

/** The manifest rows of one batch, checked: every position has exactly one row. */
export function batchRows({ parts, warmup }: BatchParts): ManifestRow[] {
  return mergeBatchRows([...parts, ...warmup], parts[0]!.stats.images + (parts[0]!.warmup ?? 0));
}

/** Fold the audit parts of `batches` (those whose first-stage part promised audits) into a shard's summary. */
export async function foldAudits(store: ObjectStore, summary: ShardSummary, batches: readonly number[], counted?: CountedParts): Promise<void> {
  const isCounted = counted ? await counted('audit', 0) : () => true;
  for (const b of batches) if (!isCounted(b)) throw new ShardNotReadyError(`${auditKey(b)} is not counted yet`);
  for (let i = 0; i < batches.length; i += 16) {
    const parts = await Promise.all(batches.slice(i, i + 16).map((b) => readJson(store, auditKey(b), AuditPart)));
    for (const part of parts) {
      const c = countAgreement(part.entries);
      summary.audit.sampled += c.sampled;
      summary.audit.agreeing += c.agreeing;
    }
  }
}

/**
 * Reads shard `index`'s record, or null when it is missing, unreadable (torn, or of another
 * version) or not this run's shard of these batches (a merge of another layout): the shard is
 * then written again.
 */
export async function readShardRecord(store: ObjectStore, runId: string, index: number, range: { from: number; to: number }): Promise<ShardRecord | null> {
  let text: string;
  try {
    text = (await store.get(manifestShardSummaryKey(index))).toString('utf8');
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = ShardRecord.safeParse(json);
  if (!parsed.success) return null;
  const record = parsed.data;
  return record.runId === runId && record.shard === index && record.from === range.from && record.to === range.to ? record : null;
}
