/**
 * The issue-18 tables of `npm run eval:savers`: load a little/big pair's cached probabilities on
 * the labeled photos, run the repeated-split evaluation (risk-splits.ts) and format Markdown.
 */
import { basename } from 'node:path';
import { loadConfig } from '../config/load-config.js';
import { dataContext, labeledImages, scoreModel } from '../cli/calibration-data.js';
import { buildTables } from '../pipeline/calibration/tables.js';
import { evaluateSplits, FIXED_SIGNALS, LEARNED_SIGNAL, mean, quantile, RANK_SIGNAL, type RuleSpec, type SplitReport, type SplitView } from './risk-splits.js';

export const TARGETS = [0.95, 0.96, 0.97, 0.98, 0.99] as const;
export const DROPS = [0.01, 0.02, 0.03] as const;
export const DELTA = 0.05;

/** Every rule the tables compare: today's point rule, SGR, and LTT on each signal. */
export const RULES: readonly RuleSpec[] = [
  { name: 'point (today, maxprob)', kind: 'point', signal: 'maxprob' },
  { name: 'SGR (maxprob)', kind: 'sgr', signal: 'maxprob' },
  ...[...FIXED_SIGNALS, LEARNED_SIGNAL].map((signal) => ({ name: `LTT (${signal})`, kind: 'ltt' as const, signal })),
  { name: 'LTT (best of maxprob, margin, entropy at δ/3: calibrate today)', kind: 'ltt', signal: 'maxprob', signals: ['maxprob', 'margin', 'entropy'] },
  { name: 'LTT (best of margin, pnorm8 at δ/2: calibrate before stop 21)', kind: 'ltt', signal: 'margin', signals: ['margin', 'pnorm8'] },
  { name: 'LTT (rank: rank-average of margin, pnorm8 at full δ; calibrate default)', kind: 'ltt', signal: RANK_SIGNAL },
  { name: 'LTT-batch (maxprob)', kind: 'ltt-batch', signal: 'maxprob' },
  { name: 'LTT-batch (margin)', kind: 'ltt-batch', signal: 'margin' },
  { name: 'LTT-batch (pnorm8)', kind: 'ltt-batch', signal: 'pnorm8' },
  { name: 'LTT-batch (best of margin, pnorm8 at δ/2)', kind: 'ltt-batch', signal: 'margin', signals: ['margin', 'pnorm8'] },
  { name: 'LTT-batch (rank-average of margin, pnorm8 at full δ)', kind: 'ltt-batch', signal: RANK_SIGNAL },
];

/** Both views of risk-splits.ts, split first (what the goal names), then population. */
export const VIEWS: readonly SplitView[] = ['split', 'population'];

const pct = (x: number): string => (Number.isNaN(x) ? '—' : `${(100 * x).toFixed(1)}%`);

/** Load the pair's rows (every photo, or every sample of shards, labelled by the CSV or the shards), evaluate `splits` random 50/50 splits, and return the Markdown. */
export async function riskMarkdown(o: { little: string; big: string; images: string; labels?: string; cache?: string; splits: number }): Promise<string> {
  const config = await loadConfig({ overrides: { little: o.little, big: o.big } });
  const ctx = dataContext(config, { cache: o.cache, progress: false, images: o.images });
  const { refs, truth } = await labeledImages(o, ctx);
  const littleName = config.little.name ?? basename(config.little.path);
  const bigName = config.big.name ?? basename(config.big.path);
  const little = await scoreModel(littleName, config.little, refs, ctx);
  const big = await scoreModel(bigName, config.big, refs, ctx);
  const table = buildTables(refs, o.images, little, big, truth, 1).calibration;
  const costs = { littleGmacs: little.gmacsPerImage, bigGmacs: big.gmacsPerImage };
  const parts = VIEWS.map((view) =>
    formatReport(
      evaluateSplits(table, costs, { splits: o.splits, fraction: 0.5, delta: DELTA, targets: TARGETS, drops: DROPS, rules: RULES, seed: 18, view }),
      `${littleName} → ${bigName}`,
      config.numerics,
    ),
  );
  return parts.join('\n');
}

/** The heading and the reading notes of one view. */
function viewText(r: SplitReport, pair: string, numerics: string): string[] {
  if (r.view === 'population') {
    return [
      `### ${pair}, population view: ${r.splits} bootstrap samples of ${r.calibrationImages} images, judged on all ${r.testImages} (δ = ${DELTA}, numerics ${numerics})`,
      '',
      'The photos are the population: each calibration sample is drawn from them with replacement, and a promise is judged by',
      "the agreement (or drop) on all of them at the chosen threshold, which is that population's exact value: no test-half",
      'noise. "held" and "failed" are as below; "× hindsight" divides by the saving of the lowest maxprob threshold that meets the',
      'target on the whole population (the best fixed maxprob threshold there is). The logistic signal is fitted on a third of',
      'the sample, which is part of the population, so its figures here are slightly optimistic.',
    ];
  }
  return [
    `### ${pair}, split view: ${r.splits} random splits, ${r.calibrationImages} images to calibrate, ${r.testImages} to test (δ = ${DELTA}, numerics ${numerics})`,
    '',
    "The test half judges the promise: a promise about the population can miss here by the test half's own noise, so this view",
    'measures a promise about a batch of new images (what ltt-batch makes).',
  ];
}

/** The report as Markdown tables, one for agreement targets and one for accuracy drops. */
export function formatReport(r: SplitReport, pair: string, numerics: string): string {
  const judge = r.view === 'population' ? 'the population' : 'the test half';
  const out: string[] = [
    ...viewText(r, pair, numerics),
    '',
    'Label-free target: agreement with the big model on the images the little one keeps. "held" counts the samples in which',
    `${judge} met the target, among those where the rule chose a threshold ("certified"); a refusal sends everything to big`,
    'and counts as 0% saved. "× hindsight" divides the mean saving by the mean saving of the best maxprob threshold in hindsight.',
    '',
    '| target | rule | certified | held | failed (of all splits) | mean saved | p5 saved | × hindsight |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const target of TARGETS) {
    const tk = String(target);
    const ref = mean(r.hindsight[tk]!.maxprob!);
    for (const f of r.agreement.filter((a) => a.target === target)) {
      const m = mean(f.saved);
      out.push(
        `| ${pct(target)} | ${f.rule} | ${pct(f.certified / r.splits)} | ${f.certified ? pct(f.held / f.certified) : '—'} | ${pct((f.certified - f.held) / r.splits)} | ${pct(m)} | ${pct(quantile(f.saved, 0.05))} | ${(m / ref).toFixed(2)} |`,
      );
    }
    const hs = Object.entries(r.hindsight[tk]!)
      .map(([s, v]) => `${s} ${pct(mean(v))}`)
      .join(', ');
    out.push(`| ${pct(target)} | hindsight-best threshold (mean over splits): ${hs} | | | | | |`);
    out.push(
      `| ${pct(target)} | oracle (keeps every agreeing image) | | | ${pct(mean(r.oracleAgreement[tk]!))} | ${pct(quantile(r.oracleAgreement[tk]!, 0.05))} | |`,
    );
  }
  out.push(
    '',
    `Labeled target: accuracy drop against the big model (cascade top-1 ≥ big top-1 − ε) on ${judge}.`,
    '',
    '| ε | rule | certified | held | failed (of all splits) | mean saved | p5 saved | × hindsight |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const d of DROPS) {
    const dk = String(d);
    const ref = mean(r.hindsightDrop[dk]!);
    for (const f of r.drop.filter((a) => a.target === d)) {
      const m = mean(f.saved);
      out.push(
        `| ${pct(d)} | ${f.rule} | ${pct(f.certified / r.splits)} | ${f.certified ? pct(f.held / f.certified) : '—'} | ${pct((f.certified - f.held) / r.splits)} | ${pct(m)} | ${pct(quantile(f.saved, 0.05))} | ${(m / ref).toFixed(2)} |`,
      );
    }
    out.push(`| ${pct(d)} | hindsight-best maxprob threshold | | | | ${pct(ref)} | ${pct(quantile(r.hindsightDrop[dk]!, 0.05))} | 1.00 |`);
    out.push(`| ${pct(d)} | oracle | | | | ${pct(mean(r.oracleDrop[dk]!))} | | |`);
  }
  return `${out.join('\n')}\n`;
}
