/**
 * The routing resolver: how one stage of a run routes its images — threshold, metric, rank
 * reference and where the threshold comes from — from the run spec and, for a self-calibrating
 * run, its stored threshold decision. Every reader of a stage's routing (the stage worker, the
 * warm-up lane, the audit job, the merge's summary) goes through resolveRouting, so the spec's
 * sentinel and the decision's fallbacks are read here only. The accept rule itself is
 * `accepts` in pipeline/routing.ts. Pure.
 */
import type { ConfidenceMetric, RankReference, Route } from '../config/schema.js';
import type { ThresholdDecision } from './self-calibration.js';

/**
 * The first-stage threshold a self-calibrating run's spec carries in place of a number: decided
 * from the warm-up at run time and stored with the run (the spec's wire form; only this module reads it).
 */
export const DECIDED_AT_WARMUP = 'decided-at-warmup' as const;

/** A stage's threshold as a run spec stores it: a number, DECIDED_AT_WARMUP, or null on the last stage. */
export type SpecThreshold = number | typeof DECIDED_AT_WARMUP | null;

/** What the resolver reads of a run spec (queue/jobs.ts's RunSpec has these fields). */
export interface RoutedRun {
  runId: string;
  metric: ConfidenceMetric;
  rankReference?: RankReference;
  stages: ReadonlyArray<{ name: string; threshold: SpecThreshold }>;
  route?: Route;
}

type Certified = Extract<ThresholdDecision, { certified: true }>;
type Refused = Extract<ThresholdDecision, { certified: false }>;

/** Where a stage's threshold comes from. */
export type RoutingState =
  /** The spec's number, or none on the last stage (it keeps every answer). */
  | { kind: 'fixed' }
  /** The warm-up lane: every answer is kept (a stage before the last then forwards them all, see the stage job). */
  | { kind: 'warmup-lane' }
  /** Decided at warm-up, and no decision stored yet: nothing may be routed. */
  | { kind: 'pending-warmup' }
  /** The warm-up certified this threshold. */
  | { kind: 'decided'; decision: Certified }
  /** The warm-up refused to certify: the stage keeps nothing (its decision's route is big-only, so it does not even run). */
  | { kind: 'refused'; decision: Refused };

/** Why a stage hands its batches on unread, every image going to the last stage. */
export type BigOnly =
  /** `route: big-only` in the spec: the run's calibration file's cost verdict. */
  | 'calibration-verdict'
  /** The stored decision's route: refused, or the certified cascade costs more than the last stage alone. */
  | 'warm-up-decision';

/** One stage's routing. */
export interface StageRouting {
  state: RoutingState;
  /**
   * Keep an answer iff its confidence ≥ threshold (pipeline/routing.ts `accepts`). null: keep every
   * answer (the last stage, the warm-up lane). +Infinity: keep none (refused, or not decided yet);
   * not 1, which keeps a confidence of exactly 1 (maxprob and rank reach it).
   */
  threshold: number | null;
  metric: ConfidenceMetric;
  /** Metric rank: what the stage ranks against (the spec's, or a self-calibrating run's decided one). */
  rankReference?: RankReference;
  /** Set when the stage hands its batches on unread. */
  bigOnly?: BigOnly;
  /** Why no image may be routed with this: the decision it needs is not stored, or lacks its reference. */
  blocked?: string;
}

/** Whether stage `stage`'s routing depends on the run's stored decision (its threshold is decided at warm-up, or it ranks against the warm-up). */
export function needsDecision(run: RoutedRun, stage: number): boolean {
  return run.stages[stage]!.threshold === DECIDED_AT_WARMUP || metricNeedsDecision(run);
}

/**
 * How stage `stage` of `run` routes its ordinary images, given the run's stored decision (null:
 * none stored, or none needed). With `lane: 'warmup'`, how the warm-up lane labels its images.
 */
export function resolveRouting(run: RoutedRun, stage: number, decision: ThresholdDecision | null, lane?: 'warmup'): StageRouting {
  if (lane === 'warmup') return { state: { kind: 'warmup-lane' }, threshold: null, ...warmupMetric(run) };
  const { state, threshold } = thresholdOf(run.stages[stage]!.threshold, decision);
  const bigOnly = bigOnlyOf(run, stage, state);
  // A stage that hands its batches on unread scores nothing: no decision is needed for it.
  if (bigOnly) return { state, threshold, metric: run.metric, bigOnly };
  const blocked =
    state.kind === 'pending-warmup'
      ? `run ${run.runId}: an ordinary batch reached stage ${run.stages[stage]!.name} before the threshold was decided`
      : undefined;
  const scoring = metricOf(run, decision);
  return { state, threshold, ...scoring, ...(blocked ? { blocked } : {}) };
}

/** resolveRouting for a stage about to score images: fails on a blocked routing instead of routing without its decision. */
export function routable(run: RoutedRun, stage: number, decision: ThresholdDecision | null): StageRouting {
  const r = resolveRouting(run, stage, decision);
  if (r.blocked) throw new Error(r.blocked);
  return r;
}

/** The threshold summary.json records for a stage: JSON has no Infinity, so a stage that keeps nothing is recorded as 1, the top of every metric's scale. */
export function recordedThreshold(r: StageRouting): number | null {
  return r.threshold === null || Number.isFinite(r.threshold) ? r.threshold : 1;
}

function thresholdOf(t: SpecThreshold, decision: ThresholdDecision | null): Pick<StageRouting, 'state' | 'threshold'> {
  if (t !== DECIDED_AT_WARMUP) return { state: { kind: 'fixed' }, threshold: t };
  // Undecided or refused, the stage keeps nothing.
  if (!decision) return { state: { kind: 'pending-warmup' }, threshold: Number.POSITIVE_INFINITY };
  if (!decision.certified) return { state: { kind: 'refused', decision }, threshold: Number.POSITIVE_INFINITY };
  return { state: { kind: 'decided', decision }, threshold: decision.threshold };
}

function bigOnlyOf(run: RoutedRun, stage: number, state: RoutingState): BigOnly | undefined {
  // Every stage before the last hands its batches on; the last labels them.
  if (run.route === 'big-only' && stage < run.stages.length - 1) return 'calibration-verdict';
  if ((state.kind === 'decided' || state.kind === 'refused') && state.decision.route === 'big-only') return 'warm-up-decision';
  return undefined;
}

/** True when a run's metric comes with its stored decision: rank without a reference in the spec (a self-calibrating rank run). */
function metricNeedsDecision(run: RoutedRun): boolean {
  return run.metric === 'rank' && !run.rankReference;
}

/**
 * The metric a stage scores with and, under rank, what it ranks against: the spec's reference, or a
 * self-calibrating run's decided one. One exception routes nothing by rank: a refusal whose warm-up
 * gave the first stage no answer to build a reference from sends every image to the last stage,
 * scored by margin.
 */
function metricOf(run: RoutedRun, decision: ThresholdDecision | null): Pick<StageRouting, 'metric' | 'rankReference' | 'blocked'> {
  if (!metricNeedsDecision(run)) return { metric: run.metric, rankReference: run.rankReference };
  if (!decision) return { metric: run.metric, blocked: `run ${run.runId}: metric rank, but its threshold and reference are not decided yet` };
  if (decision.rankReference) return { metric: 'rank', rankReference: decision.rankReference };
  if (!decision.certified && decision.metric === 'rank' && decision.sample === 0) return { metric: 'margin' };
  return {
    metric: run.metric,
    blocked: `run ${run.runId}: metric rank, but its stored decision has no rank reference (stored by an older version); refusing to route without it`,
  };
}

/**
 * The metric of a run's warm-up lane. A self-calibrating rank run has no reference before its
 * decision, which the warm-up's answers build, so the lane's rows (final for warm-up images)
 * carry their margin, one of rank's two signals; its first stage also records margin and pnorm.
 */
function warmupMetric(run: RoutedRun): Pick<StageRouting, 'metric' | 'rankReference'> {
  if (run.metric === 'rank' && !run.rankReference) return { metric: 'margin' };
  return { metric: run.metric, rankReference: run.rankReference };
}
