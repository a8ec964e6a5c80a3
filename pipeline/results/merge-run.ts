/**
 * The merge step: read every batch's result parts from the output location and write the
 * manifest (one row per input, in input order, streamed) as Parquet shards and, unless the run is
 * too large for one JSON file, manifest.jsonl, folding the summary from the same pass; then,
 * after the plots are drawn from what it gathered (pipeline/plots/run-plots.ts), summary.json,
 * the run's last output.
 * Idempotent: it only reads parts and overwrites its outputs, so running it twice is harmless.
 */
import type { ReviewCalibrationRecord } from '../reviews/review-calibration-record.js';
import { AuditPart, countAgreement } from '../audit/audit-part.js';
import { summarizeAudit } from '../audit/audit-summary.js';
import { DEFAULT_OUTPUT, type OutputSettings } from '../../config/schema.js';
import { type ManifestRow, ResultPart, mergeBatchRows, summarize, type RunSummary, type SummaryInput } from './manifest.js';
import { ShardWriter } from './shard-writer.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { addConfidence, emptyHistogram } from '../plots/histogram.js';
import { RunCalibration } from '../plots/run-calibration.js';
import { type RunPlotData, runPlotKeys } from '../plots/run-plots.js';
import { summaryDecision, type ThresholdDecision } from '../self-calibration.js';
import { auditKey, MANIFEST_KEY, partKey, RUN_CALIBRATION_KEY, SUMMARY_KEY, warmupPartKey } from './output-layout.js';

/** What the merge needs besides the parts: the run's description and its batch count. */
export interface MergeInput extends Omit<SummaryInput, 'parts' | 'errorsByKind' | 'images' | 'finishedAt'> {
  batches: number;
  /** Repeated keys the listing dropped (reported in the summary). */
  duplicates?: number;
  /** The run's audit settings, when it audits: the summary then reports agreement and drift. */
  audit?: { fraction: number; expectAgreement?: number };
  /** A self-calibrating run's settings and stored decision: the summary reports them with the warm-up. */
  selfCalibration?: { targetAgreement: number; delta: number; decision: ThresholdDecision | null };
  /** A run planned big-only, with the reason the summary gives. */
  route?: NonNullable<RunSummary['route']>;
  /** A scheduled firing calibrated from human reviews: what it used (pipeline/reviews/review-calibration.ts). */
  reviewCalibration?: ReviewCalibrationRecord;
  /** How to write the manifest; absent: the defaults. */
  output?: OutputSettings;
  /** Images the run listed (what `jsonl: auto` decides by); absent: none, so a small run. */
  listedImages?: number;
}

/** Whether a run of `listedImages` images gets manifest.jsonl (a run without Parquet shards always does). */
export function writesJsonl(output: OutputSettings, listedImages: number): boolean {
  if (output.jsonl === 'auto') return listedImages <= output.jsonlMaxImages || !output.parquet;
  return output.jsonl === 'always';
}

/** A merged run: its summary (listing the plots to draw) and what they are drawn from. */
export interface MergedRun {
  summary: RunSummary;
  plots: RunPlotData;
}

/** Merge all parts of a finished run into manifest.jsonl under `store`; the summary is writeSummary's to write, after the plots. */
export async function mergeRun(store: ObjectStore, input: MergeInput, now: () => Date = () => new Date()): Promise<MergedRun> {
  const readPart = async (batch: number, stage: number, keyOf = partKey) => {
    const part = await readJson(store, keyOf(batch, stage), ResultPart);
    // Another run's part at this location is never input: it would mix two runs' rows.
    if (part.runId !== input.runId)
      throw new Error(`${keyOf(batch, stage)} in ${store.describe()} belongs to run ${part.runId}, not ${input.runId}: two runs share this output location`);
    return part;
  };
  // A batch's parts form a chain: stage k wrote a part only if stage k-1 forwarded images. A
  // self-calibrating run's batch with warm-up images has a second chain, the warm-up lane's.
  const readBatch = async (batch: number) => {
    const parts = [await readPart(batch, 0)];
    while (parts[parts.length - 1]!.stats.forwarded > 0) parts.push(await readPart(batch, parts.length));
    const warmup: ResultPart[] = [];
    if (parts[0]!.warmup) {
      warmup.push(await readPart(batch, 0, warmupPartKey));
      while (warmup[warmup.length - 1]!.stats.forwarded > 0) warmup.push(await readPart(batch, warmup.length, warmupPartKey));
    }
    return { parts, warmup };
  };

  const stats: Array<Pick<ResultPart, 'stage' | 'stats' | 'writer' | 'cost' | 'skipped'>> = [];
  const errorsByKind: Record<string, number> = {};
  let images = 0;
  const histogram = emptyHistogram(input.stages.map((s) => ({ name: s.name, threshold: s.threshold ?? null })));
  const auditedBatches: number[] = [];
  // What the warm-up lane cost: images each stage inferred there.
  const warmupInferred = input.stages.map(() => 0);
  let warmupImages = 0;
  const output = input.output ?? DEFAULT_OUTPUT;
  const jsonl = writesJsonl(output, input.listedImages ?? 0);
  // A run of one shard encodes it in place: starting a thread would cost more than it saves.
  const expectedShards = Math.ceil((input.listedImages ?? 0) / output.shardRows);
  const shards = new ShardWriter(store, output.shardConcurrency, Math.min(output.shardConcurrency, expectedShards));
  let shardRows: ManifestRow[] = [];
  // Batches are read a window ahead but written strictly in order, so memory is bounded by the
  // window, not by the run: a run of millions of images streams through.
  async function* manifestChunks(): AsyncGenerator<string> {
    const window = 16;
    const pending: Array<Promise<{ parts: ResultPart[]; warmup: ResultPart[] }>> = [];
    // A read that fails while an earlier batch is awaited is reported when its turn comes; until
    // then it must not count as an unhandled rejection (nor outlive a merge that failed first).
    const readAhead = (batch: number) => {
      const p = readBatch(batch);
      p.catch(() => undefined);
      pending.push(p);
    };
    for (let next = 0; next < Math.min(window, input.batches); next++) readAhead(next);
    for (let batch = 0; batch < input.batches; batch++) {
      const { parts: ordinary, warmup } = await pending.shift()!;
      if (batch + window < input.batches) readAhead(batch + window);
      const parts = [...ordinary, ...warmup];
      const rows = mergeBatchRows(parts, ordinary[0]!.stats.images + (ordinary[0]!.warmup ?? 0));
      for (const w of warmup) warmupInferred[w.stage]! += w.stats.images - w.stats.errors;
      warmupImages += warmup[0]?.stats.images ?? 0;
      images += rows.length;
      let chunk = '';
      for (const row of rows) {
        if (row.error) errorsByKind[row.error.kind] = (errorsByKind[row.error.kind] ?? 0) + 1;
        else if (row.stage !== null && row.confidence !== null) addConfidence(histogram, row.stage, row.confidence);
        if (jsonl) chunk += `${JSON.stringify(row)}\n`;
      }
      for (const { stage, stats: s, stageName, forwardedConfidence, writer, cost, skipped } of parts) {
        stats.push({ stage, stats: s, writer, cost, skipped });
        for (const c of forwardedConfidence ?? []) addConfidence(histogram, stageName, c, true);
      }
      if (ordinary[0]!.audits) auditedBatches.push(batch);
      // Shards end on batch boundaries, so each holds whole batches and ~shardRows rows.
      if (output.parquet) for (const row of rows) shardRows.push(row);
      if (output.parquet && shardRows.length >= output.shardRows) {
        await shards.add(shardRows);
        shardRows = [];
      }
      yield chunk;
    }
    // The last shard, or the only one of an empty run: readers always find the schema.
    if (output.parquet && (shardRows.length > 0 || shards.written === 0)) await shards.add(shardRows);
  }
  try {
    if (jsonl) await store.putStream(MANIFEST_KEY, manifestChunks());
    else {
      for await (const chunk of manifestChunks()) void chunk;
      // A manifest.jsonl left by an earlier merge of this location would be read before the shards.
      await store.delete(MANIFEST_KEY);
    }
  } finally {
    await shards.close();
  }
  const manifest = { jsonl, parquetShards: await shards.finish() };

  const audit = input.audit ? await readAudits(store, auditedBatches, input.audit, input.stages[input.stages.length - 1]!.gmacsPerImage) : undefined;
  const base = summarize({ ...input, parts: stats, errorsByKind, images, finishedAt: now() });
  const plotData: RunPlotData = { runId: input.runId, histogram };
  const calibration = await readRunCalibrationFrom(store);
  let calibrationSummary: RunSummary['calibration'];
  if (calibration) {
    const first = base.stages[0]!;
    const inferred = first.images - first.errors;
    const realised = { gmacsPerImage: inferred ? base.macs.cascadeG / inferred : 0, agreement: audit && audit.sampled > 0 ? audit.agreement : null };
    plotData.calibration = { curve: calibration, realised };
    const { rule, metric, threshold, expected } = calibration;
    calibrationSummary = { rule, metric, threshold, expected, realised: { fractionToBig: base.fractionToBig, ...realised } };
  }
  const selfCalibration: RunSummary['selfCalibration'] = input.selfCalibration && {
    targetAgreement: input.selfCalibration.targetAgreement,
    delta: input.selfCalibration.delta,
    warmupImages,
    warmupGmacs: warmupInferred.reduce((sum, n, i) => sum + n * input.stages[i]!.gmacsPerImage, 0),
    decision: input.selfCalibration.decision && summaryDecision(input.selfCalibration.decision),
  };
  const summary: RunSummary = {
    ...base,
    duplicatesDropped: input.duplicates ?? 0,
    ...(audit ? { audit } : {}),
    ...(selfCalibration ? { selfCalibration } : {}),
    ...(calibrationSummary ? { calibration: calibrationSummary } : {}),
    ...(input.route ? { route: input.route } : {}),
    ...(input.reviewCalibration ? { reviewCalibration: input.reviewCalibration } : {}),
    plots: runPlotKeys(calibration !== null),
    manifest,
  };
  return { summary, plots: plotData };
}

/** Write a merged run's summary.json: its last output, so its presence means the others are written. */
export async function writeSummary(store: ObjectStore, summary: RunSummary): Promise<void> {
  await store.put(SUMMARY_KEY, `${JSON.stringify(summary, null, 2)}\n`);
}

/** Agreement over the audit parts of `batches` (the batches whose first-stage part sent audits). */
async function readAudits(store: ObjectStore, batches: number[], settings: NonNullable<MergeInput['audit']>, gmacsPerImage: number) {
  const totals = { sampled: 0, agreeing: 0 };
  for (let i = 0; i < batches.length; i += 16) {
    const parts = await Promise.all(batches.slice(i, i + 16).map((b) => readJson(store, auditKey(b), AuditPart)));
    for (const part of parts) {
      const c = countAgreement(part.entries);
      totals.sampled += c.sampled;
      totals.agreeing += c.agreeing;
    }
  }
  return summarizeAudit(totals, settings.fraction, settings.expectAgreement, totals.sampled * gmacsPerImage);
}

/** The calibration the run was started with (written by `cascade run --calibration`), if any. */
async function readRunCalibrationFrom(store: ObjectStore): Promise<RunCalibration | null> {
  try {
    return await readJson(store, RUN_CALIBRATION_KEY, RunCalibration);
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
}
