/**
 * `npm run eval:savers [-- --cache DIR] [--splits N] [--only risk|savers]`: reproduces the
 * calibration tables of docs/results.md.
 * - savers: every little candidate of ../shared/assets against the ensemble, each selection
 *   rule, calibrated on the hash-chosen half of the 717 photos and reported on the other half;
 * - risk (issue 18): for the pairs mobilenetv2-int8 → ensemble and shufflenet → ensemble, over
 *   N (default 200) random calibration/test splits, how often each rule's promise held on the
 *   test half and what it saved, next to the best threshold in hindsight and the oracle.
 * Probabilities are cached (see `cascade calibrate --cache`), so reruns take seconds.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.CASCADE_LOG_LEVEL ??= 'warn';
import { saverMarkdown, searchSaverCommand } from '../cli/commands/search-saver.js';
import { modelGmacs } from '../pipeline/models/loaded-model.js';
import { loadModelSpec } from '../config/load-config.js';
import { BIG_SPEC, findAssets, REPO_ROOT } from './assets.js';
import { riskMarkdown } from './risk-report.js';

const { values } = parseArgs({
  options: {
    cache: { type: 'string' },
    fraction: { type: 'string', default: '0.5' },
    splits: { type: 'string', default: '200' },
    only: { type: 'string' },
  },
});

const assets = findAssets();
if ('missing' in assets) {
  console.log(`eval-savers skipped: ${assets.missing}`);
  process.exit(0);
}
const candidates = ['squeezenet-fp16', 'squeezenet', 'shufflenet', 'shufflenet-float', 'mobilenetv2'].map((m) => join(REPO_ROOT, 'config/models', `${m}.yaml`));
const images = join(assets.dir, 'images');
const labels = join(assets.dir, 'labels/groundtruth.csv');
const big = await loadModelSpec(BIG_SPEC);
const bigName = big.name ?? 'big';
const bigGmacs = await modelGmacs(big);

const runs = [
  { title: 'No-loss rule (cascade top-1 ≥ big top-1 on the calibration half)', rule: 'no-loss' as const },
  { title: 'No-loss rule with --max-drop 0.01', rule: 'no-loss' as const, maxDrop: 0.01 },
  { title: "TinySaver's rule (little at least as accurate as big on what it keeps)", rule: 'tinysaver' as const },
  {
    title: 'Label-free rule (agreement with big ≥ 99% on kept images; labels used only to report accuracy)',
    rule: 'label-free' as const,
    targetAgreement: 0.99,
  },
];
for (const r of values.only === 'risk' ? [] : runs) {
  const rows = await searchSaverCommand({
    big: BIG_SPEC,
    candidates,
    images,
    labels,
    rule: r.rule,
    maxDrop: r.maxDrop,
    targetAgreement: r.targetAgreement,
    calibrationFraction: Number(values.fraction),
    cache: values.cache,
    progress: false,
    print: false,
  }).catch((err: Error) => {
    console.log(`${r.title}: failed: ${err.message}`);
    return null;
  });
  if (!rows) continue;
  console.log(`\n### ${r.title}\n`);
  console.log(saverMarkdown(rows, bigName, bigGmacs));
}

if (values.only !== 'savers') {
  for (const little of ['mobilenetv2', 'shufflenet']) {
    console.log(
      await riskMarkdown({
        little: join(REPO_ROOT, 'config/models', `${little}.yaml`),
        big: BIG_SPEC,
        images,
        labels,
        cache: values.cache,
        splits: Number(values.splits),
      }),
    );
  }
}
