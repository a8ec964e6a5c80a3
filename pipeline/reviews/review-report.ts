/**
 * What the human reviews of a run show: the cascade's accuracy against the humans, overall and by
 * the stage whose answer was kept, with 95% Wilson intervals; the same for the random slice alone
 * (a uniform sample of the run: unbiased) and for the images picked as likely wrong (biased);
 * how often the little and big stages disagreed on reviewed audited images and who was right;
 * and how often several annotators of one image disagreed. Pure: the caller reads and stores.
 */
import type { AuditEntry } from '../audit/audit-part.js';
import type { ManifestRow } from '../results/manifest.js';
import type { ReviewRow } from './review-row.js';
import { type Accuracy, type Estimate, estimate, type ReviewReport } from './review-summary.js';

/** Tallies of correct answers, overall and by stage. */
class AccuracyCount {
  private overall = { n: 0, hits: 0 };
  private stages = new Map<string, { n: number; hits: number }>();

  add(stage: string, correct: boolean): void {
    const s = this.stages.get(stage) ?? { n: 0, hits: 0 };
    this.stages.set(stage, s);
    for (const t of [this.overall, s]) {
      t.n++;
      if (correct) t.hits++;
    }
  }

  result(): Accuracy {
    return {
      overall: estimate(this.overall.hits, this.overall.n),
      byStage: Object.fromEntries([...this.stages].map(([name, t]) => [name, estimate(t.hits, t.n)])),
    };
  }
}

/** The report of `reviews` (by key) on the run's manifest rows and audit entries (by key). */
export function reviewReport(rows: Iterable<ManifestRow>, reviews: ReadonlyMap<string, ReviewRow>, audits: ReadonlyMap<string, AuditEntry>): ReviewReport {
  const all = new AccuracyCount();
  const random = new AccuracyCount();
  const selected = new AccuracyCount();
  const lb = { n: 0, disagree: 0, littleRight: 0, bigRight: 0, neitherRight: 0 };
  let labelled = 0;
  let reviewed = 0;
  let errorRowsLabelled = 0;
  let several = 0;
  let disagreeing = 0;
  for (const row of rows) {
    const isLabelled = row.error === null && row.label !== null;
    if (isLabelled) labelled++;
    const review = reviews.get(row.key);
    if (!review) continue;
    reviewed++;
    if (review.annotations > 1) several++;
    if (review.annotatorsDisagree) disagreeing++;
    if (!isLabelled) {
      errorRowsLabelled++;
      continue;
    }
    const stage = row.stage ?? 'unknown';
    const correct = row.label === review.label;
    all.add(stage, correct);
    (review.reasons.includes('random') ? random : selected).add(stage, correct);
    const audit = audits.get(row.key);
    if (audit?.big) {
      lb.n++;
      if (audit.big.label !== audit.little.label) {
        lb.disagree++;
        if (audit.little.label === review.label) lb.littleRight++;
        else if (audit.big.label === review.label) lb.bigRight++;
        else lb.neitherRight++;
      }
    }
  }
  return {
    reviewed,
    labelledRows: labelled,
    coverage: labelled ? (reviewed - errorRowsLabelled) / labelled : 0,
    errorRowsLabelled,
    accuracy: all.result(),
    intervals: '95% Wilson score',
    samples: { random: { bias: 'unbiased', accuracy: random.result() }, selected: { bias: 'biased', accuracy: selected.result() } },
    agreement: {
      littleBig: { disagreement: estimate(lb.disagree, lb.n), littleRight: lb.littleRight, bigRight: lb.bigRight, neitherRight: lb.neitherRight },
      annotators: { severalAnnotations: several, disagreeing },
    },
  };
}

/** The report in a few lines for people. */
export function formatReviewReport(r: ReviewReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const est = (e: Estimate) => (e.n === 0 ? 'no reviews' : `${pct(e.rate)} (${e.hits}/${e.n}, 95% Wilson ${pct(e.low)}–${pct(e.high)})`);
  const acc = (a: Accuracy) => [est(a.overall), ...Object.entries(a.byStage).map(([s, e]) => `${s} ${est(e)}`)].join('; ');
  const lb = r.agreement.littleBig;
  return [
    `reviewed ${r.reviewed} images (${pct(r.coverage)} of ${r.labelledRows} labelled rows${r.errorRowsLabelled ? `, plus ${r.errorRowsLabelled} error rows labelled` : ''})`,
    `  accuracy, all reviews: ${acc(r.accuracy)}`,
    `  accuracy, random slice (unbiased for the run): ${acc(r.samples.random.accuracy)}`,
    `  accuracy, picked as likely wrong (biased): ${acc(r.samples.selected.accuracy)}`,
    `  little/big disagreement on reviewed audits: ${est(lb.disagreement)}; the human sided with little ${lb.littleRight}, big ${lb.bigRight}, neither ${lb.neitherRight}`,
    `  annotators: ${r.agreement.annotators.disagreeing} of ${r.agreement.annotators.severalAnnotations} images with several annotations disagree`,
  ].join('\n');
}
