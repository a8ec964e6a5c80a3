/**
 * The cost/accuracy frontier of a set of models: every model alone, every pair (cheaper →
 * dearer) and every chain up to a length, each priced with measured per-image timings
 * (model-timing.ts) and judged by top-1 (with labels) or agreement with the dearest model
 * (without), and the configurations no other one beats on both counts. Pure.
 *
 * A configuration's cost per image is Σ over stages of reach_k × (decode_k + infer_k): each stage
 * is charged its own fetch and decode, as when its workers run on other machines (the tensor cache
 * that lets a big stage reuse the little stage's decode in one process is not assumed).
 */
import type { ConfidenceMetric, Prices } from '../../config/schema.js';
import { CalibrationRefused } from '../calibration/calibrate.js';
import type { ChainEntry } from '../calibration/chain.js';
import { certifyChain } from '../calibration/chain-risk.js';
import { accepts, confidence, topK } from '../routing.js';
import type { ModelTiming } from './model-timing.js';
import { priceOf } from './run-cost.js';

/** A model of the frontier: its name and measured timing. */
export interface FrontierModel {
  name: string;
  gmacsPerImage: number;
  timing: Pick<ModelTiming, 'decodeSeconds' | 'inferSeconds' | 'workerClass'>;
}

/** Machine time and money per image of one stage that every image reaches. */
export function stageCost(t: FrontierModel['timing'], prices: Prices): { seconds: number; price: number } {
  // Decoding always runs on CPU cores; inference is priced by the worker class that ran it.
  return { seconds: t.decodeSeconds + t.inferSeconds, price: priceOf(t.decodeSeconds, 'cpu', prices) + priceOf(t.inferSeconds, t.workerClass, prices) };
}

/** Cost per image of a chain whose stage k is reached by the fraction reach[k] of images; price per million images. */
export function chainCost(models: readonly FrontierModel[], reach: readonly number[], prices: Prices): { secondsPerImage: number; pricePerMillion: number } {
  let seconds = 0;
  let price = 0;
  models.forEach((m, k) => {
    const c = stageCost(m.timing, prices);
    seconds += reach[k]! * c.seconds;
    price += reach[k]! * c.price;
  });
  return { secondsPerImage: seconds, pricePerMillion: price * 1e6 };
}

/** Every increasing sequence of indices 0..n−1 of length 1..maxLength: singles, then pairs, then longer chains. */
export function chainsUpTo(n: number, maxLength: number): number[][] {
  const out: number[][] = [];
  const grow = (prefix: number[], length: number) => {
    if (prefix.length === length) return void out.push(prefix);
    for (let i = (prefix[prefix.length - 1] ?? -1) + 1; i < n; i++) grow([...prefix, i], length);
  };
  for (let length = 1; length <= Math.min(n, maxLength); length++) grow([], length);
  return out;
}

/** What a chain did on a table: the fraction of images reaching each stage, and each image's answer. */
export interface Walk {
  reach: number[];
  answers: number[];
}

/** Send every entry through `stages` (indices into its rows) with fixed thresholds; the last stage keeps the rest. */
export function walkChain(entries: readonly ChainEntry[], stages: readonly number[], metric: ConfidenceMetric, thresholds: readonly number[]): Walk {
  const reached = stages.map(() => 0);
  const answers = entries.map((e) => {
    let k = 0;
    for (; k < stages.length - 1; k++) {
      reached[k]!++;
      if (accepts(confidence(e.rows[stages[k]!]!, metric), thresholds[k]!)) break;
    }
    if (k === stages.length - 1) reached[k]!++;
    return topK(e.rows[stages[k]!]!, 1)[0]!;
  });
  return { reach: reached.map((r) => r / entries.length), answers };
}

/** Share of answers equal to the labels (top-1), or to the reference answers (agreement). */
export function agreementRate(answers: readonly number[], reference: readonly number[]): number {
  let same = 0;
  answers.forEach((a, i) => {
    if (a === reference[i]) same++;
  });
  return same / answers.length;
}

/** A point to judge: a name, what it costs, and how good it is (higher is better). */
export interface ParetoPoint {
  id: string;
  cost: number;
  quality: number;
}

/** Whether a point is on the frontier, and if not, the cheapest point that beats it. */
export interface ParetoVerdict {
  id: string;
  onFrontier: boolean;
  dominatedBy: string | null;
}

/** True when `b` is at least as cheap and as good as `a`, and strictly better on one. */
export function dominates(b: ParetoPoint, a: ParetoPoint): boolean {
  return b.cost <= a.cost && b.quality >= a.quality && (b.cost < a.cost || b.quality > a.quality);
}

/**
 * Each point's verdict. Exact ties dominate neither way, so both stay on the frontier. A dominated
 * point names its cheapest dominator (the best of those at that cost), which is itself on the frontier.
 */
export function paretoFrontier(points: readonly ParetoPoint[]): ParetoVerdict[] {
  return points.map((a) => {
    const by = points.filter((b) => dominates(b, a)).sort((x, y) => x.cost - y.cost || y.quality - x.quality)[0];
    return { id: a.id, onFrontier: !by, dominatedBy: by?.id ?? null };
  });
}

/** How each chain's thresholds are set. */
export type FrontierRule =
  | { kind: 'guaranteed'; targetAgreement: number; delta: number; metrics?: readonly ConfidenceMetric[] }
  | { kind: 'fixed'; metric: ConfidenceMetric; threshold: number };

export interface FrontierInput {
  /** In cost order, cheapest first: chains run cheaper → dearer. */
  models: readonly FrontierModel[];
  /** Thresholds are certified on these (guaranteed rule). */
  calibration: readonly ChainEntry[];
  /** Figures come from these; empty: from the calibration entries. */
  test: readonly ChainEntry[];
  rule: FrontierRule;
  prices: Prices;
  /** Longest chain tried (default 3). */
  maxStages?: number;
}

/** One configuration of the frontier. */
export interface FrontierRow {
  /** e.g. 'shufflenet → ensemble'. */
  config: string;
  models: string[];
  metric: ConfidenceMetric | null;
  /** One per stage but the last. */
  thresholds: number[];
  /** Fraction of images reaching each stage. */
  reach: number[];
  gmacsPerImage: number;
  secondsPerImage: number;
  /** Price of a million images in the prices' currency. */
  pricePerMillion: number;
  /** Top-1 with labels, else agreement with the dearest model; null when the rule refused the chain. */
  quality: number | null;
  verdict: 'frontier' | 'dominated' | 'refused';
  dominatedBy: string | null;
  /** Why a chain was refused. */
  note: string | null;
}

export interface FrontierResult {
  /** 'top-1', or 'agreement with <dearest model>'. */
  quality: string;
  images: number;
  rows: FrontierRow[];
}

/** Evaluate every configuration and mark the frontier; see the module comment. */
export function evaluateFrontier(input: FrontierInput): FrontierResult {
  const { models, prices } = input;
  if (models.length === 0) throw new Error('the frontier needs at least one model');
  const judged = input.test.length > 0 ? input.test : input.calibration;
  if (judged.length === 0) throw new Error('no image could be scored by every model');
  const labeled = judged.every((e) => e.label !== undefined);
  const dearest = models.length - 1;
  const reference = labeled ? judged.map((e) => e.label!) : walkChain(judged, [dearest], 'maxprob', []).answers;
  const rows = chainsUpTo(models.length, input.maxStages ?? 3).map((idx): FrontierRow => {
    const chosen = idx.map((i) => models[i]!);
    const base = { config: chosen.map((m) => m.name).join(' → '), models: chosen.map((m) => m.name), dominatedBy: null, note: null };
    const gmacsAll = chosen.reduce((s, m) => s + m.gmacsPerImage, 0);
    const settings = thresholdsFor(idx, chosen, input);
    if ('refused' in settings) {
      // Refused, a run would send every image through every stage: priced so, not judged.
      const cost = chainCost(
        chosen,
        idx.map(() => 1),
        prices,
      );
      return {
        ...base,
        metric: null,
        thresholds: [],
        reach: idx.map(() => 1),
        gmacsPerImage: gmacsAll,
        ...cost,
        quality: null,
        verdict: 'refused',
        note: settings.refused,
      };
    }
    const walk = walkChain(judged, idx, settings.metric ?? 'maxprob', settings.thresholds);
    return {
      ...base,
      metric: settings.metric,
      thresholds: settings.thresholds,
      reach: walk.reach,
      gmacsPerImage: chosen.reduce((s, m, k) => s + walk.reach[k]! * m.gmacsPerImage, 0),
      ...chainCost(chosen, walk.reach, prices),
      quality: agreementRate(walk.answers, reference),
      verdict: 'frontier',
    };
  });
  const judgedRows = rows.filter((r) => r.quality !== null);
  const verdicts = new Map(paretoFrontier(judgedRows.map((r) => ({ id: r.config, cost: r.pricePerMillion, quality: r.quality! }))).map((v) => [v.id, v]));
  for (const r of judgedRows) {
    const v = verdicts.get(r.config)!;
    r.verdict = v.onFrontier ? 'frontier' : 'dominated';
    r.dominatedBy = v.dominatedBy;
  }
  return { quality: labeled ? 'top-1' : `agreement with ${models[dearest]!.name}`, images: judged.length, rows };
}

function thresholdsFor(
  idx: readonly number[],
  chosen: readonly FrontierModel[],
  input: FrontierInput,
): { metric: ConfidenceMetric | null; thresholds: number[] } | { refused: string } {
  if (idx.length === 1) return { metric: null, thresholds: [] };
  const { rule } = input;
  if (rule.kind === 'fixed') return { metric: rule.metric, thresholds: idx.slice(1).map(() => rule.threshold) };
  const entries = input.calibration.map((e) => ({ key: e.key, rows: idx.map((i) => e.rows[i]!) }));
  try {
    const c = certifyChain(chosen, entries, { targetAgreement: rule.targetAgreement, delta: rule.delta, metrics: rule.metrics });
    return { metric: c.metric, thresholds: c.thresholds };
  } catch (err) {
    if (err instanceof CalibrationRefused) return { refused: err.message.split(';')[0]! };
    throw err;
  }
}

/** A sentence per dominated configuration: what beats it, at what cost and quality. */
export function dominanceSentences(result: FrontierResult): string[] {
  const byName = new Map(result.rows.map((r) => [r.config, r]));
  return result.rows
    .filter((r) => r.verdict === 'dominated')
    .map((r) => {
      const d = byName.get(r.dominatedBy!)!;
      const q = (x: number) => `${(100 * x).toFixed(1)}%`;
      return `${describeConfig(r)} is dominated by ${describeConfig(d)}: it costs ${(r.pricePerMillion / d.pricePerMillion).toFixed(2)}× as much for ${result.quality} ${q(r.quality!)} vs ${q(d.quality!)}`;
    });
}

/** A configuration in words: 'mobilenetv2 alone', 'shufflenet → ensemble at maxprob ≥ 0.5'. */
export function describeConfig(r: Pick<FrontierRow, 'config' | 'models' | 'metric' | 'thresholds'>): string {
  if (r.models.length === 1) return `${r.config} alone`;
  return `${r.config} at ${r.metric} ≥ ${r.thresholds.map((t) => Number(t.toFixed(3))).join(', ')}`;
}
