/**
 * `cascade status` output, computed from a run's tracker snapshot and its jobs in the stage
 * queues: pure functions, so the maths (pending images, rate, ETA) is testable without Redis.
 * Image counts come from the tracker; queue counts are batches (one job = one batch).
 */
import { z } from 'zod';
import { formatReviewReport } from '../pipeline/reviews/review-report.js';
import { ReviewReport } from '../pipeline/reviews/review-summary.js';
import { AuditSummary, summarizeAudit } from '../pipeline/audit/audit-summary.js';
import type { RunProgress } from '../queue/run-tracker.js';
import { refusalLine, ThresholdDecision } from '../pipeline/self-calibration.js';

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

export const RunState = z.enum(['listing', 'running', 'merging', 'done', 'failed']);
export type RunState = z.infer<typeof RunState>;

/** A run as `cascade status --json` prints it. */
export const RunStatus = z.object({
  runId: z.string(),
  state: RunState,
  source: z.string(),
  out: z.string(),
  /** Images listed in all; null while listing. */
  total: z.number().int().nullable(),
  listed: z.number().int(),
  /** Images with their final row. */
  done: z.number().int(),
  /** done / total (listed so far while listing), 0..1. */
  fraction: z.number(),
  imagesPerSecond: z.number(),
  /** Seconds left at the current rate; null when unknown. */
  etaSeconds: z.number().nullable(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  mergedAt: z.string().nullable(),
  mergeError: z.string().nullable(),
  /** Why the run failed before its merge (its listing failed), when it did. */
  failedReason: z.string().optional(),
  stages: z.array(StageStatus),
  /** Live audit agreement (runs with audit sampling only); `expected` audits promised so far. */
  audit: AuditSummary.extend({ expected: z.number().int().nonnegative() }).optional(),
  /** A finished run's human reviews report (summary.json `reviews`, from `cascade import reviews`). */
  reviews: ReviewReport.optional(),
  /** Why a finished run's summary.json could not be read for its reviews (credentials, network). */
  reviewsUnread: z.string().optional(),
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

/** The state a run is in, from its tracker snapshot. */
export function runState(p: RunProgress): RunState {
  if (p.mergeError || p.failedReason) return 'failed';
  if (p.mergedAt) return 'done';
  if (p.completedAt) return 'merging';
  return p.listed ? 'running' : 'listing';
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
  const started = p.startedAt ? Date.parse(p.startedAt) : NaN;
  const end = p.completedAt ? Date.parse(p.completedAt) : now.getTime();
  const seconds = Number.isFinite(started) ? Math.max(0, (end - started) / 1000) : 0;
  const rate = seconds > 0 ? p.final / seconds : 0;
  const of = p.total ?? p.listedImages;
  const left = Math.max(0, of - p.final);
  const state = runState(p);
  const raw = p.selfCalibration?.decision;
  const decision = raw ? ThresholdDecision.parse(JSON.parse(raw)) : null;
  const eta = state === 'done' || state === 'merging' ? 0 : p.total !== null && rate > 0 ? left / rate : null;
  return {
    runId: p.spec.runId,
    state,
    source: p.spec.source,
    out: p.spec.out,
    total: p.total,
    listed: p.listedImages,
    done: p.final,
    fraction: of > 0 ? Math.min(1, p.final / of) : state === 'done' ? 1 : 0,
    imagesPerSecond: rate,
    etaSeconds: eta,
    startedAt: p.startedAt,
    completedAt: p.completedAt,
    mergedAt: p.mergedAt,
    mergeError: p.mergeError,
    ...(p.failedReason ? { failedReason: p.failedReason } : {}),
    stages,
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

/** The multi-line text view of one run. */
export function formatRunStatus(r: RunStatus): string {
  const of = r.total === null ? `${r.listed}+ (listing)` : String(r.total);
  const failed = r.failedReason ? `failed: ${r.failedReason}` : `merge failed: ${r.mergeError}`;
  const eta = r.state === 'done' ? 'done' : r.state === 'failed' ? failed : `ETA ${formatDuration(r.etaSeconds)}`;
  const lines = [
    `run ${r.runId}  ${r.state}  ${r.source} → ${r.out}`,
    `${progressBar(r.fraction)} ${(r.fraction * 100).toFixed(1).padStart(5)}%  ${r.done}/${of} images  ${r.imagesPerSecond.toFixed(1)} images/s  ${eta}`,
    `  ${'stage'.padEnd(10)} ${'queued'.padStart(7)} ${'active'.padStart(7)} ${'failed'.padStart(7)}  | ${'done'.padStart(8)} ${'accepted'.padStart(9)} ${'routed'.padStart(8)} ${'errors'.padStart(7)} ${'pending'.padStart(8)}`,
    ...r.stages.map(
      (s) =>
        `  ${s.name.padEnd(10)} ${String(s.queued).padStart(7)} ${String(s.active).padStart(7)} ${String(s.failed).padStart(7)}  | ${String(s.done).padStart(8)} ${String(s.accepted).padStart(9)} ${String(s.routed).padStart(8)} ${String(s.errors).padStart(7)} ${String(s.pending).padStart(8)}`,
    ),
    `  (queued/active/failed count batches of this run; the other columns count images)`,
  ];
  for (const s of r.stages.filter((x) => x.failed > 0)) {
    lines.push(
      `  ${s.name}: ${s.failed} batch(es) failed for good${s.failedReason ? `: ${s.failedReason}` : ''}`,
      `    fix the cause, then \`cascade retry ${r.runId}\``,
    );
  }
  if (r.selfCalibration) lines.push(formatSelfCalibrationStatus(r.selfCalibration));
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

/** One line per run, newest first, for `cascade status` without a run id. */
export function formatRunList(runs: readonly RunStatus[]): string {
  if (runs.length === 0) return 'no runs yet';
  const header = `${'RUN'.padEnd(28)} ${'STATE'.padEnd(8)} ${'PROGRESS'.padStart(17)} ${'STARTED'.padEnd(24)} OUT`;
  const rows = runs.map((r) => {
    const progress = `${r.done}/${r.total ?? `${r.listed}+`}`;
    return `${r.runId.padEnd(28)} ${r.state.padEnd(8)} ${progress.padStart(17)} ${(r.startedAt ?? '-').padEnd(24)} ${r.out}`;
  });
  return [header, ...rows].join('\n');
}
