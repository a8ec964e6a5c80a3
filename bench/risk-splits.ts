/**
 * The repeated-split evaluation of issue 18: over many random calibration/test splits of one
 * labeled table, how often each rule's promise held on the test part, and what it saved, next
 * to the best threshold in hindsight and the oracle. Pure; the I/O is in eval-savers.ts.
 */
import type { CalibrationEntry, CascadeCosts } from '../pipeline/calibration/sweep.js';
import { accepts, confidence, PNORM_P, rankOf, rankReferenceOf, topK } from '../pipeline/routing.js';
import { deferralFeatures, fitLogistic, logisticConfidence, pNormMaxLogit } from './deferral-signals.js';
import { certifyAccuracyDrop, certifyAgreement, type RiskMethod, type ScoredImage } from '../pipeline/calibration/risk-control.js';
import { seeded } from './stats.js';

/** One image with everything the rules look at. */
interface Row {
  conf: Record<string, number>;
  features: number[];
  agrees: boolean;
  littleCorrect: boolean;
  bigCorrect: boolean;
}

export const FIXED_SIGNALS = ['maxprob', 'margin', 'entropy', 'pnorm2', 'pnorm4', 'pnorm8', 'pnorm12', 'pnorm16'] as const;
/** Learned on the first third of the calibration part, certified on the other two thirds. */
export const LEARNED_SIGNAL = 'logistic';
/**
 * One signal combining margin and pnorm8 fixed in advance, so a rule can use the full δ instead of
 * splitting it over the two: the mean of each one's rank among the calibration part (its ECDF there).
 * It is the routing metric `rank` (pipeline/routing.ts rankOf), so these figures measure the code that routes.
 */
export const RANK_SIGNAL = 'rank(margin,pnorm8)';
/** The pnorm signal the routing metric ranks (p = PNORM_P). */
const RANK_PNORM = `pnorm${PNORM_P}`;

/** A rule as evaluated: which procedure, on which signal. */
export interface RuleSpec {
  name: string;
  kind: 'point' | RiskMethod;
  signal: string;
  /** Several signals, each certified at δ / count (Bonferroni); the one keeping the most images wins. Overrides `signal`. */
  signals?: readonly string[];
}

export interface AgreementFigures {
  rule: string;
  target: number;
  /** Splits in which the rule chose a threshold (guaranteed rules refuse otherwise). */
  certified: number;
  /** Of those, splits where test-part agreement on kept images ≥ target. */
  held: number;
  /** MACs saved on the test part per split (0 when refused: everything goes to big). */
  saved: number[];
}

export interface SplitReport {
  view: SplitView;
  splits: number;
  calibrationImages: number;
  testImages: number;
  agreement: AgreementFigures[];
  drop: AgreementFigures[];
  /** Per target: saved by the lowest threshold meeting it on the test part itself, per signal. */
  hindsight: Record<string, Record<string, number[]>>;
  /** Per target: a router that keeps agreeing images and just enough disagreeing ones. */
  oracleAgreement: Record<string, number[]>;
  /** Per drop: the labeled oracle (big sees exactly what little gets wrong and big right, plus slack). */
  oracleDrop: Record<string, number[]>;
  hindsightDrop: Record<string, number[]>;
}

function rows(table: readonly CalibrationEntry[]): Row[] {
  return table.map((e) => {
    const lt = topK(e.little, 1)[0]!;
    const bt = topK(e.big, 1)[0]!;
    if (e.label === undefined) throw new Error(`risk splits: image ${e.key} has no label`);
    return {
      conf: {
        maxprob: confidence(e.little, 'maxprob'),
        margin: confidence(e.little, 'margin'),
        entropy: confidence(e.little, 'entropy'),
        pnorm2: pNormMaxLogit(e.little, 2),
        pnorm4: pNormMaxLogit(e.little, 4),
        pnorm8: pNormMaxLogit(e.little, 8),
        pnorm12: pNormMaxLogit(e.little, 12),
        pnorm16: pNormMaxLogit(e.little, 16),
      },
      features: deferralFeatures(e.little),
      agrees: lt === bt,
      littleCorrect: lt === e.label,
      bigCorrect: bt === e.label,
    };
  });
}

/** Saved on `part` when images with confidence ≥ t stay with little. */
function savedAt(part: readonly Row[], c: (r: Row) => number, t: number, costs: CascadeCosts): { saved: number; agreement: number; drop: number } {
  let kept = 0;
  let agree = 0;
  let big = 0;
  let cascade = 0;
  for (const r of part) {
    const keep = accepts(c(r), t);
    if (keep) {
      kept++;
      if (r.agrees) agree++;
    }
    if (r.bigCorrect) big++;
    if (keep ? r.littleCorrect : r.bigCorrect) cascade++;
  }
  const n = part.length;
  const gmacs = costs.littleGmacs + ((n - kept) / n) * costs.bigGmacs;
  return { saved: 1 - gmacs / costs.bigGmacs, agreement: kept === 0 ? 1 : agree / kept, drop: (big - cascade) / n };
}

/** The point rule of today: lowest threshold whose sample agreement reaches the target. */
function pointThreshold(part: readonly Row[], c: (r: Row) => number, target: number): number {
  const sorted = [...part].sort((a, b) => c(b) - c(a));
  let agree = 0;
  let best = 2;
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i]!.agrees) agree++;
    const next = sorted[i + 1];
    if (next !== undefined && c(next) === c(sorted[i]!)) continue;
    if (agree / (i + 1) >= target) best = c(sorted[i]!);
  }
  return best;
}

/** The point no-loss rule with slack: lowest threshold whose sample drop is ≤ maxDrop. */
function pointDropThreshold(part: readonly Row[], c: (r: Row) => number, maxDrop: number): number {
  const sorted = [...part].sort((a, b) => c(b) - c(a));
  let drop = 0;
  let best = 2;
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i]!;
    drop += (r.bigCorrect ? 1 : 0) - (r.littleCorrect ? 1 : 0);
    const next = sorted[i + 1];
    if (next !== undefined && c(next) === c(r)) continue;
    if (drop / part.length <= maxDrop + 1e-12) best = c(r);
  }
  return best;
}

/** Saved by a router that sends to big only the disagreeing images beyond what the target allows. */
function oracleAgreementSaved(part: readonly Row[], target: number, costs: CascadeCosts): number {
  const a = part.filter((r) => r.agrees).length;
  const d = part.length - a;
  const allowed = Math.min(d, Math.floor((a * (1 - target)) / target + 1e-9));
  const toBig = d - allowed;
  return 1 - (costs.littleGmacs + (toBig / part.length) * costs.bigGmacs) / costs.bigGmacs;
}

/** Saved by the labeled oracle allowed `maxDrop`: big sees what little gets wrong and big right, less the slack. */
function oracleDropSaved(part: readonly Row[], maxDrop: number, costs: CascadeCosts): number {
  const harms = part.filter((r) => !r.littleCorrect && r.bigCorrect).length;
  const toBig = Math.max(0, harms - Math.floor(maxDrop * part.length + 1e-9));
  return 1 - (costs.littleGmacs + (toBig / part.length) * costs.bigGmacs) / costs.bigGmacs;
}

/**
 * How a rule's promise is judged.
 * - 'split': random calibration/test halves of the photos; the test half judges the promise. A
 *   promise about the population can miss on ~358 test images by the test half's own noise, so
 *   this view measures a promise about a batch of new images (what ltt-batch makes).
 * - 'population': the photos ARE the population (the bootstrap world): each calibration sample
 *   is drawn from them with replacement and the promise is judged on all of them, exactly, with
 *   no test-half noise. This measures the promise ltt and sgr make.
 */
export type SplitView = 'split' | 'population';

/** Run `splits` random splits (fraction to calibration) and evaluate every rule at every target. */
export function evaluateSplits(
  table: readonly CalibrationEntry[],
  costs: CascadeCosts,
  o: {
    splits: number;
    fraction: number;
    delta: number;
    targets: readonly number[];
    drops: readonly number[];
    rules: readonly RuleSpec[];
    seed: number;
    /** Default 'split'. */
    view?: SplitView;
  },
): SplitReport {
  const all = rows(table);
  const rand = seeded(o.seed);
  const agreement = new Map<string, AgreementFigures>();
  const drop = new Map<string, AgreementFigures>();
  const hindsight: SplitReport['hindsight'] = {};
  const hindsightDrop: SplitReport['hindsightDrop'] = {};
  const oracleAgreement: SplitReport['oracleAgreement'] = {};
  const oracleDrop: SplitReport['oracleDrop'] = {};
  const cut = Math.round(all.length * o.fraction);
  const signals = [...FIXED_SIGNALS, LEARNED_SIGNAL, RANK_SIGNAL];
  for (let s = 0; s < o.splits; s++) {
    // Split view: Fisher-Yates on indices; population view: a bootstrap sample of the photos.
    let cal: Row[];
    let test: Row[];
    if (o.view === 'population') {
      cal = Array.from({ length: cut }, () => all[Math.floor(rand() * all.length)]!);
      test = all;
    } else {
      const idx = all.map((_, i) => i);
      for (let i = idx.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
      cal = idx.slice(0, cut).map((i) => all[i]!);
      test = idx.slice(cut).map((i) => all[i]!);
    }
    // The learned signal: fit on the first third of the calibration part only, so the
    // certification below runs on images the model never saw.
    const fitPart = cal.slice(0, Math.round(cal.length / 3));
    const certPart = cal.slice(fitPart.length);
    const model = fitLogistic(
      fitPart.map((r) => r.features),
      fitPart.map((r) => r.agrees),
    );
    const reference = rankReferenceOf({ margin: cal.map((r) => r.conf.margin!), pnorm: cal.map((r) => r.conf[RANK_PNORM]!) });
    const conf = (signal: string): ((r: Row) => number) => {
      if (signal === LEARNED_SIGNAL) return (r) => logisticConfidence(model, r.features);
      if (signal === RANK_SIGNAL) return (r) => rankOf(r.conf.margin!, r.conf[RANK_PNORM]!, reference);
      return (r) => r.conf[signal]!;
    };
    const calFor = (signal: string) => (signal === LEARNED_SIGNAL ? certPart : cal);

    for (const target of o.targets) {
      const tk = String(target);
      push(oracleAgreement, tk, oracleAgreementSaved(test, target, costs));
      hindsight[tk] ??= {};
      for (const signal of signals) {
        const c = conf(signal);
        push(hindsight[tk], signal, savedAt(test, c, pointThreshold(test, c, target), costs).saved);
      }
      for (const rule of o.rules) {
        let c = conf(rule.signal);
        const part = calFor(rule.signal);
        let threshold: number | null = null;
        if (rule.kind === 'point') threshold = pointThreshold(part, c, target);
        else {
          const candidates = rule.signals ?? [rule.signal];
          let kept = -1;
          for (const signal of candidates) {
            const cs = conf(signal);
            const sample: ScoredImage[] = calFor(signal).map((r) => ({ confidence: cs(r), agrees: r.agrees }));
            const cert = certifyAgreement(sample, target, o.delta / candidates.length, { method: rule.kind, explain: false });
            if (cert.certified && cert.fractionAccepted > kept) {
              kept = cert.fractionAccepted;
              threshold = cert.threshold;
              c = cs;
            }
          }
        }
        const key = `${rule.name}@${tk}`;
        const fig = agreement.get(key) ?? { rule: rule.name, target, certified: 0, held: 0, saved: [] };
        agreement.set(key, fig);
        if (threshold === null) {
          fig.saved.push(0);
          continue;
        }
        const r = savedAt(test, c, threshold, costs);
        fig.certified++;
        if (r.agreement >= target) fig.held++;
        fig.saved.push(r.saved);
      }
    }

    for (const maxDrop of o.drops) {
      const dk = String(maxDrop);
      push(oracleDrop, dk, oracleDropSaved(test, maxDrop, costs));
      const c = conf('maxprob');
      push(hindsightDrop, dk, savedAt(test, c, pointDropThreshold(test, c, maxDrop), costs).saved);
      for (const kind of ['point', 'ltt'] as const) {
        let threshold: number | null;
        if (kind === 'point') threshold = pointDropThreshold(cal, c, maxDrop);
        else {
          const cert = certifyAccuracyDrop(
            cal.map((r) => ({ confidence: c(r), littleCorrect: r.littleCorrect, lastCorrect: r.bigCorrect })),
            maxDrop,
            o.delta,
          );
          threshold = cert.certified ? cert.threshold : null;
        }
        const name = kind === 'point' ? 'point no-loss (maxprob)' : 'LTT accuracy drop (maxprob)';
        const key = `${name}@${dk}`;
        const fig = drop.get(key) ?? { rule: name, target: maxDrop, certified: 0, held: 0, saved: [] };
        drop.set(key, fig);
        if (threshold === null) {
          fig.saved.push(0);
          continue;
        }
        const r = savedAt(test, c, threshold, costs);
        fig.certified++;
        if (r.drop <= maxDrop + 1e-12) fig.held++;
        fig.saved.push(r.saved);
      }
    }
  }
  return {
    view: o.view ?? 'split',
    splits: o.splits,
    calibrationImages: cut,
    testImages: o.view === 'population' ? all.length : all.length - cut,
    agreement: [...agreement.values()],
    drop: [...drop.values()],
    hindsight,
    hindsightDrop,
    oracleAgreement,
    oracleDrop,
  };
}

function push(lists: Record<string, number[]>, key: string, value: number): void {
  const list = lists[key] ?? [];
  list.push(value);
  lists[key] = list;
}

/** Mean of a list. */
export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** The p-quantile (0–1) by linear interpolation between order statistics. */
export function quantile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}
