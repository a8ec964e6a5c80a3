/**
 * Certification of a self-calibrating run: read the warm-up lane's parts from the run's output,
 * certify the target agreement on them (under rank, against a reference built from the same
 * warm-up) and say where the rest of the run goes. The queue side — storing the decision once
 * and releasing the held jobs — is queue/threshold-decision.ts.
 */
import { DEFAULT_PRICES, type ConfidenceMetric, type Prices } from '../config/schema.js';
import { chooseRoute } from './cost/route-choice.js';
import { addPartCost, emptyCostTotals } from './cost/run-cost.js';
import { ResultPart } from './results/manifest.js';
import { warmupPartKey } from './results/output-layout.js';
import { WarmupPart } from './results/warmup-part.js';
import { decideRank, decideThreshold, type ThresholdDecision, warmupSample } from './self-calibration.js';
import { readJson, type ObjectStore } from './storage/object-store.js';

/** What certification reads of a self-calibrating run's spec. */
export interface CertifiedRun {
  metric: ConfidenceMetric;
  stages: ReadonlyArray<{ name: string }>;
  prices?: Prices;
  selfCalibration: { targetAgreement: number; delta: number };
}

/** Certify `run`'s threshold on the warm-up parts of `batches` under `store`, with the route the rest of the run takes. */
export async function certifyWarmup(store: ObjectStore, batches: number[], run: CertifiedRun, now: Date): Promise<ThresholdDecision> {
  const { first, last } = await readWarmupParts(store, batches, run.stages.length - 1);
  const { targetAgreement: target, delta } = run.selfCalibration;
  // A rank run ranks against its own warm-up: the reference is built here and stored with the threshold.
  const decided = run.metric === 'rank' ? decideRank(first, last, target, delta, now) : decideThreshold(warmupSample(first, last), target, delta, now);
  return withRoute(decided, run, first, last);
}

/**
 * The decision with where the rest of the run goes: a refusal sends every image straight to the
 * last stage (running the first would only add its cost), and so does a certified threshold whose
 * cascade costs more per image than the last stage alone at the warm-up's measured costs.
 */
function withRoute(
  d: ThresholdDecision,
  run: Pick<CertifiedRun, 'stages' | 'prices'>,
  first: readonly ResultPart[],
  last: readonly ResultPart[],
): ThresholdDecision {
  const totals = emptyCostTotals(run.stages.map((s) => s.name));
  const prices = run.prices ?? DEFAULT_PRICES;
  for (const p of first) addPartCost(totals[0]!, p.cost, p.stats.images - p.stats.errors);
  for (const p of last) addPartCost(totals[run.stages.length - 1]!, p.cost, p.stats.images - p.stats.errors);
  if (!d.certified) {
    const { bigOnlyPerImage } = chooseRoute(totals, 0, prices);
    return {
      ...d,
      route: 'big-only',
      routeReason: 'certification refused: the first stage would keep nothing',
      expectedCost: { cascadePerImage: null, bigOnlyPerImage },
    };
  }
  const choice = chooseRoute(totals, d.fractionAccepted, prices);
  return {
    ...d,
    route: choice.route,
    routeReason: choice.reason,
    expectedCost: { cascadePerImage: choice.cascadePerImage, bigOnlyPerImage: choice.bigOnlyPerImage },
  };
}

/** The warm-up parts of `batches`: the first stage's, and the last stage's where it forwarded. */
async function readWarmupParts(store: ObjectStore, batches: number[], last: number): Promise<{ first: WarmupPart[]; last: ResultPart[] }> {
  const first: WarmupPart[] = [];
  const lastParts: ResultPart[] = [];
  for (let i = 0; i < batches.length; i += 16) {
    const parts = await Promise.all(batches.slice(i, i + 16).map((b) => readJson(store, warmupPartKey(b, 0), WarmupPart)));
    first.push(...parts);
    // A batch whose warm-up images all failed to decode forwarded none: it has no last-stage part.
    const next = await Promise.all(parts.filter((p) => p.stats.forwarded > 0).map((p) => readJson(store, warmupPartKey(p.batch, last), ResultPart)));
    lastParts.push(...next);
  }
  return { first, last: lastParts };
}
