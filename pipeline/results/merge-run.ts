/**
 * The merge step: read every batch's result parts from the output location and write the
 * manifest (one row per input, in input order, streamed) as Parquet shards (those not written
 * while the run labelled) and, unless the run is too large for one JSON file, manifest.jsonl,
 * folding the summary from the same pass and the written shards' partial summaries; then,
 * after the plots are drawn from what it gathered (pipeline/plots/run-plots.ts), summary.json,
 * the run's last output.
 * Idempotent: it only reads parts and overwrites its outputs, so running it twice is harmless.
 */
import type { ReviewCalibrationRecord } from '../reviews/review-calibration-record.js';
import { summarizeAudit } from '../audit/audit-summary.js';
import { DEFAULT_OUTPUT, type OutputSettings } from '../../config/schema.js';
import { type ManifestRow, type RunSummary, type SummaryInput, summarizeTotals } from './manifest.js';
import { addShardSummary, batchRows, emptyShardSummary, foldAudits, foldBatch, histogramOf, readShardBatches, readShardRecord } from './manifest-shard.js';
import { ShardWriter } from './shard-writer.js';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { RunCalibration } from '../plots/run-calibration.js';
import { type RunPlotData, runPlotKeys } from '../plots/run-plots.js';
import { summaryDecision, type ThresholdDecision } from '../self-calibration.js';
import { batchesPerShard, MANIFEST_KEY, RUN_CALIBRATION_KEY, SUMMARY_KEY, shardBatchRange, shardCount } from './output-layout.js';

/** What the merge needs besides the parts: the run's description, its batch count and size. */
export interface MergeInput extends Omit<SummaryInput, 'parts' | 'errorsByKind' | 'images' | 'finishedAt'> {
  batches: number;
  /** Images per batch as listed (the run spec's): shards are ranges of batches (output-layout.ts batchesPerShard). */
  batchSize: number;
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

/**
 * Merge all parts of a finished run into its manifest under `store`; the summary is
 * writeSummary's to write, after the plots. Shard by shard (output-layout.ts `shardBatchRange`):
 * a shard already written with its record (while the run labelled: live-shards.ts) is not encoded
 * again and its partial summary is folded instead of its parts, which are then read only for
 * manifest.jsonl. Every shard's partial is folded in shard order, so the summary is the same
 * whichever shards were written before.
 */
export async function mergeRun(store: ObjectStore, input: MergeInput, now: () => Date = () => new Date()): Promise<MergedRun> {
  const output = input.output ?? DEFAULT_OUTPUT;
  const jsonl = writesJsonl(output, input.listedImages ?? 0);
  const names = input.stages.map((s) => s.name);
  const perShard = batchesPerShard(output.shardRows, input.batchSize);
  const count = shardCount(input.batches, perShard);
  // A run of one shard encodes it in place: starting a thread would cost more than it saves.
  const shards = new ShardWriter(store, output.shardConcurrency, Math.min(output.shardConcurrency, count));
  const total = emptyShardSummary(names);
  // Shards are read strictly in order, batches a window ahead, so memory is bounded by a shard
  // and the shards being encoded, not by the run: a run of millions of images streams through.
  async function* manifestChunks(): AsyncGenerator<string> {
    for (let index = 0; index < count; index++) {
      const range = shardBatchRange(index, perShard, input.batches);
      const written = output.parquet ? await readShardRecord(store, input.runId, index, range) : null;
      if (written && !jsonl) {
        addShardSummary(total, written.summary);
        continue;
      }
      const summary = emptyShardSummary(names);
      const rows: ManifestRow[] = [];
      const audited: number[] = [];
      for await (const batch of readShardBatches(store, input.runId, range)) {
        const batchRowsOf = batchRows(batch);
        if (!written) foldBatch(summary, batch, batchRowsOf);
        if (batch.parts[0]!.audits) audited.push(batch.batch);
        let chunk = '';
        if (jsonl) for (const row of batchRowsOf) chunk += `${JSON.stringify(row)}\n`;
        if (output.parquet && !written) for (const row of batchRowsOf) rows.push(row);
        yield chunk;
      }
      if (written) {
        addShardSummary(total, written.summary);
        continue;
      }
      if (input.audit) await foldAudits(store, summary, audited);
      addShardSummary(total, summary);
      if (output.parquet) {
        await shards.add(rows, { runId: input.runId, shard: index, ...range, rows: rows.length, summary });
      }
    }
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
  await shards.finish(output.parquet ? count : 0);
  const manifest = { jsonl, parquetShards: output.parquet ? count : 0 };
  const histogram = histogramOf(total, input.stages);
  const warmupInferred = total.warmupInferred;
  const warmupImages = total.warmupImages;

  const audit = input.audit
    ? summarizeAudit(total.audit, input.audit.fraction, input.audit.expectAgreement, total.audit.sampled * input.stages[input.stages.length - 1]!.gmacsPerImage)
    : undefined;
  const base = summarizeTotals({ ...input, errorsByKind: total.errorsByKind, images: total.images, finishedAt: now() }, total.stages);
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

/** The calibration the run was started with (written by `cascade run --calibration`), if any. */
async function readRunCalibrationFrom(store: ObjectStore): Promise<RunCalibration | null> {
  try {
    return await readJson(store, RUN_CALIBRATION_KEY, RunCalibration);
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
}
