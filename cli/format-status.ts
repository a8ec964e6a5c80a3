/**
 * `cascade status` output, computed from a run's tracker snapshot and its jobs in the stage
 * queues: pure functions, so the maths (pending images per stage) is testable without Redis.
 * The run's view (state, errors, routing, cost, ETA) is queue/run-view.ts; this adds the stages
 * and renders both. Image counts come from the tracker; queue counts are batches (one job = one batch).
 */
import { z } from 'zod';
import { formatReviewReport } from '../pipeline/reviews/review-report.js';
import { ReviewReport } from '../pipeline/reviews/review-summary.js';
import { AuditSummary, summarizeAudit } from '../pipeline/audit/audit-summary.js';
import type { RunProgress } from '../queue/run-tracker.js';
import { describeListing } from '../producers/describe-listing.js';
import { buildRunView, isFinished, RunView } from '../queue/run-view.js';
import { refusalLine, ThresholdDecision } from '../pipeline/self-calibration.js';
import { ReviewCalibrationRecord } from '../pipeline/reviews/review-calibration-record.js';

/** One stage of a run: batches in its queue, images it has finished. */
export const StageStatus = z.object({
  name: z.string(),
  /** Batches of this run waiting (or delayed for a retry) in the stage's queue. */
  queued: z.number().int(),
  /** Batches being processed now. */
  active: z.number().int(),
  /** Batches that failed for good. */
  failed: z.number().int(),
  /** Why one of them failed (the last attempt's error), when some did. */
  failedReason: z.string().optional(),
  /** Images this stage has finished (accepted + forwarded + errors). */
  done: z.number().int(),
  accepted: z.number().int(),
  /** Images forwarded to the next stage. */
  routed: z.number().int(),
  errors: z.number().int(),
  /** Images that have reached this stage but are not finished yet. */
  pending: z.number().int(),
});
export type StageStatus = z.infer<typeof StageStatus>;

/** A run as `cascade status <runId> --json` prints it: its view plus per-stage detail. */
export const RunStatus = RunView.extend({
  stages: z.array(StageStatus),
  /** Live audit agreement (runs with audit sampling only); `expected` audits promised so far. */
  audit: AuditSummary.extend({ expected: z.number().int().nonnegative() }).optional(),
  /** A finished run's human reviews report (summary.json `reviews`, from `cascade import reviews`). */
  reviews: ReviewReport.optional(),
  /** Why a finished run's summary.json could not be read for its reviews (credentials, network). */
  reviewsUnread: z.string().optional(),
  /** A scheduled firing calibrated from reviews (`schedule add --calibration-from`): the reviews it used and what they certified. */
  reviewCalibration: ReviewCalibrationRecord.optional(),
  /** An unfinished run queued on another layout than the status's config: why workers configured alike never run it. */
  queueMismatch: z.string().optional(),
  /** Self-calibrating runs: the warm-up's progress and the threshold decision (null until made). */
  selfCalibration: z
    .object({
      targetAgreement: z.number(),
      delta: z.number(),
      /** Warm-up images (null until the listing chose them). */
      warmupImages: z.number().int().nullable(),
      /** Warm-up images with their final row. */
      warmupDone: z.number().int(),
      decision: ThresholdDecision.nullable(),
    })
    .optional(),
});
export type RunStatus = z.infer<typeof RunStatus>;

/** Batches of one run in one stage queue. */
export interface BatchCounts {
  queued: number;
  active: number;
  failed: number;
  failedReason?: string;
}

/** Combine a tracker snapshot with per-stage batch counts (absent = zero) at time `now`. */
export function buildRunStatus(p: RunProgress, batches: ReadonlyArray<BatchCounts | undefined>, now: Date): RunStatus {
  const stages = p.spec.stages.map((s, i): StageStatus => {
    const c = p.stages[i] ?? { images: 0, accepted: 0, forwarded: 0, errors: 0 };
    // What reached a stage: every listed image for the first, what the previous one forwarded after.
    const arrived = i === 0 ? p.listedImages : (p.stages[i - 1]?.forwarded ?? 0);
    const b = batches[i] ?? { queued: 0, active: 0, failed: 0 };
    return { name: s.name, ...b, done: c.images, accepted: c.accepted, routed: c.forwarded, errors: c.errors, pending: Math.max(0, arrived - c.images) };
  });
  const raw = p.selfCalibration?.decision;
  const decision = raw ? ThresholdDecision.parse(JSON.parse(raw)) : null;
  return {
    ...buildRunView(p, now, describeListing),
    stages,
    ...(p.spec.reviewCalibration ? { reviewCalibration: p.spec.reviewCalibration } : {}),
    ...(p.spec.audit
      ? {
          audit: {
            // A certified self-calibrating run's audits watch for drift below its certified bound.
            ...summarizeAudit(
              { sampled: p.audit.done, agreeing: p.audit.agreeing },
              p.spec.audit.fraction,
              decision?.certified ? decision.bound : p.spec.audit.expectAgreement,
            ),
            expected: p.audit.expected,
          },
        }
      : {}),
    ...(p.spec.selfCalibration
      ? {
          selfCalibration: {
            targetAgreement: p.spec.selfCalibration.targetAgreement,
            delta: p.spec.selfCalibration.delta,
            warmupImages: p.selfCalibration?.warmupTotal ?? p.selfCalibration?.warmup?.images ?? null,
            warmupDone: p.selfCalibration?.warmupDone ?? 0,
            decision,
          },
        }
      : {}),
  };
}

/** A text progress bar of `width` cells for a fraction in 0..1. */
export function progressBar(fraction: number, width = 30): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const full = Math.round(f * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`;
}

/** Seconds as "42 s", "3 min 05 s", "2 h 07 min". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** A fraction as a percentage with one decimal, or — when unknown. */
export function formatPercent(x: number | null): string {
  return x === null || !Number.isFinite(x) ? '—' : `${(100 * x).toFixed(1)}%`;
}

/** A run's error rows: "0", or the count with its kinds, e.g. "12 (forbidden 12)". */
export function formatErrors(v: Pick<RunView, 'errors' | 'errorsByKind'>): string {
  const kinds = Object.entries(v.errorsByKind).map(([kind, n]) => `${kind} ${n}`);
  return kinds.length && v.errors > 0 ? `${v.errors} (${kinds.join(', ')})` : String(v.errors);
}

/** Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `64.0 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${x.toFixed(1)} ${units[i]}`;
}

/** The line under the listing counts: where the listing stands and the bytes held under a byte budget; null when there is neither. */
export function formatListingWindow(v: Pick<RunView, 'state' | 'listingAt' | 'windowBytes' | 'bytesInFlight'>): string | null {
  const at = v.listingAt === null ? [] : [`listing: ${v.listingAt}`];
  // A finished run holds nothing; its budget is history.
  const bytes = v.windowBytes === null || isFinished(v.state) ? [] : [`bytes in flight ${formatBytes(v.bytesInFlight ?? 0)} of ${formatBytes(v.windowBytes)}`];
  const parts = [...at, ...bytes];
  return parts.length ? `  ${parts.join('  ')}` : null;
}

/** A run's ETA: blank until it can be estimated, blank once the run has finished. */
export function formatEta(v: Pick<RunView, 'state' | 'etaSeconds'>): string {
  return v.etaSeconds === null || isFinished(v.state) ? '' : formatDuration(v.etaSeconds);
}

/** The multi-line text view of one run. */
export function formatRunStatus(r: RunStatus): string {
  const of = r.total === null ? `${r.listed}+ (listing)` : String(r.total);
  const eta = formatEta(r);
  const tail = r.state === 'failed' ? `failed: ${r.failedReason ?? 'unknown reason'}` : isFinished(r.state) ? 'done' : eta ? `ETA ${eta}` : '';
  const last = r.stages[r.stages.length - 1]?.name ?? 'the last stage';
  const lines = [
    `run ${r.runId}  ${r.state}  ${r.source} → ${r.out}`,
    `${progressBar(r.fraction)} ${(r.fraction * 100).toFixed(1).padStart(5)}%  ${r.done}/${of} images  ${r.imagesPerSecond.toFixed(1)} images/s${tail ? `  ${tail}` : ''}`,
    `  listed ${r.listed}${r.total === null ? ' so far' : ''}  queued ${r.queued}  done ${r.done}${r.window === null ? '' : `  (window ${r.window} batches)`}`,
    ...[formatListingWindow(r)].filter((l) => l !== null),
    `  errors ${formatErrors(r)}  routed to ${last} ${formatPercent(r.routed)}  cost saved ${formatPercent(r.costSaved)}`,
    `  ${'stage'.padEnd(10)} ${'queued'.padStart(7)} ${'active'.padStart(7)} ${'failed'.padStart(7)}  | ${'done'.padStart(8)} ${'accepted'.padStart(9)} ${'routed'.padStart(8)} ${'errors'.padStart(7)} ${'pending'.padStart(8)}`,
    ...r.stages.map(
      (s) =>
        `  ${s.name.padEnd(10)} ${String(s.queued).padStart(7)} ${String(s.active).padStart(7)} ${String(s.failed).padStart(7)}  | ${String(s.done).padStart(8)} ${String(s.accepted).padStart(9)} ${String(s.routed).padStart(8)} ${String(s.errors).padStart(7)} ${String(s.pending).padStart(8)}`,
    ),
    `  (queued/active/failed count batches of this run; the other columns count images)`,
  ];
  if (r.queueMismatch) lines.push(`  QUEUE LAYOUT: ${r.queueMismatch}`);
  for (const s of r.stages.filter((x) => x.failed > 0)) {
    lines.push(
      `  ${s.name}: ${s.failed} batch(es) failed for good${s.failedReason ? `: ${s.failedReason}` : ''}`,
      `    fix the cause, then \`cascade retry ${r.runId}\``,
    );
  }
  if (r.selfCalibration) lines.push(formatSelfCalibrationStatus(r.selfCalibration));
  if (r.reviewCalibration) lines.push(formatReviewCalibration(r.reviewCalibration));
  const a = r.audit;
  if (a) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const promise = a.promised === undefined ? '' : `; promised ${pct(a.promised)}${a.drift ? ' — DRIFT: even the upper bound is below the promise' : ''}`;
    lines.push(
      a.sampled === 0
        ? `  audit: 0/${a.expected} audits in so far (fraction ${a.fraction} of accepted images)`
        : `  audit: ${a.agreeing}/${a.sampled} agree = ${pct(a.agreement)} (95% Wilson ${pct(a.wilson.low)}–${pct(a.wilson.high)}), ${a.sampled}/${a.expected} audits in${promise}`,
    );
  }
  if (r.reviews) lines.push(formatReviewReport(r.reviews).replace(/^/gm, '  '));
  if (r.reviewsUnread) lines.push(`  reviews: not read from ${r.out}: ${r.reviewsUnread}`);
  return lines.join('\n');
}

/** One line on a firing calibrated from reviews: which reviews (run, file hash, count) and the threshold, or the refusal and what it kept. */
export function formatReviewCalibration(c: ReviewCalibrationRecord): string {
  const used = c.run
    ? `${c.reviews} reviews of run ${c.runId} at ${c.run} (reviews.jsonl sha256 ${c.reviewsSha256?.slice(0, 12)})`
    : `no reviewed run under ${c.from}`;
  return c.certified
    ? `  calibrated from ${used}: ${c.metric} ≥ ${Number(c.threshold!.toPrecision(4))}; ${c.promise ?? ''}`.trimEnd()
    : `  calibration from reviews REFUSED (${used}): ${c.refusal}; kept ${c.fallback}`;
}

/** One line on a self-calibrating run: its warm-up while it runs, then the decision (a refusal loudly). */
export function formatSelfCalibrationStatus(c: NonNullable<RunStatus['selfCalibration']>): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const head = `  self-calibration: target ${pct(c.targetAgreement)} at δ ${c.delta}, warm-up ${c.warmupDone}/${c.warmupImages ?? '?'} images`;
  const d = c.decision;
  if (!d) return `${head}; threshold not decided yet (ordinary batches wait for it)`;
  if (d.certified)
    return `${head}; threshold ${Number(d.threshold.toPrecision(4))}${d.metric === 'rank' ? ' (rank against the warm-up)' : ''}, agreement on kept images ≥ ${pct(d.bound)} w.p. ≥ ${1 - d.delta}`;
  return `${head}; REFUSED: ${refusalLine(d)}`;
}

/** The cells of a run's row in the run list (and the dashboard's Runs page), by column. */
export function runListCells(r: RunView): Record<(typeof RUN_LIST_COLUMNS)[number], string> {
  return {
    RUN: r.runId,
    STATE: r.state,
    PROGRESS: `${r.done}/${r.total ?? `${r.listed}+`}`,
    ERRORS: formatErrors(r),
    ROUTED: formatPercent(r.routed),
    SAVED: formatPercent(r.costSaved),
    ETA: formatEta(r),
    STARTED: r.startedAt ?? '-',
    OUT: r.out,
  };
}

/** The run list's columns, in order. */
export const RUN_LIST_COLUMNS = ['RUN', 'STATE', 'PROGRESS', 'ERRORS', 'ROUTED', 'SAVED', 'ETA', 'STARTED', 'OUT'] as const;
// Numbers line up on the right.
const RIGHT = new Set<string>(['PROGRESS', 'ROUTED', 'SAVED', 'ETA']);

/** One line per run, newest first, for `cascade status` without a run id; columns as wide as their widest cell. */
export function formatRunList(runs: readonly RunView[]): string {
  if (runs.length === 0) return 'no runs yet';
  const rows = runs.map(runListCells);
  const width = (c: (typeof RUN_LIST_COLUMNS)[number]) => Math.max(c.length, ...rows.map((r) => r[c].length));
  const line = (cell: (c: (typeof RUN_LIST_COLUMNS)[number]) => string) =>
    RUN_LIST_COLUMNS.map((c, i) => (i === RUN_LIST_COLUMNS.length - 1 ? cell(c) : RIGHT.has(c) ? cell(c).padStart(width(c)) : cell(c).padEnd(width(c))))
      .join('  ')
      .trimEnd();
  return [line((c) => c), ...rows.map((r) => line((c) => r[c]))].join('\n');
}
