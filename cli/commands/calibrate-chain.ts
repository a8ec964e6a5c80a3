/**
 * `cascade calibrate --stages A B C`: thresholds for an N-stage cascade on cached
 * probabilities, by default under the guaranteed rule (pipeline/calibration/chain-risk.ts),
 * else a point-estimate rule stage by stage (pipeline/calibration/chain.ts); judged on the test
 * half, written as a chain calib.json that `cascade run --calibration` applies to the config's
 * `stages:`.
 */
import { writeFile } from 'node:fs/promises';
import { makeDir } from '../../pipeline/storage/make-dir.js';
import { basename, dirname, resolve } from 'node:path';
import type { ChainCalibrationFile } from '../../config/calibration.js';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { RANK_TWO_STAGES } from '../../config/schema.js';
import { type ChainPoint, calibrateChain, evaluateChain } from '../../pipeline/calibration/chain.js';
import { CHAIN_GUARANTEED_METRICS, certifyChain } from '../../pipeline/calibration/chain-risk.js';
import { ALL_METRICS } from '../../pipeline/calibration/select.js';
import { buildChainTables } from '../../pipeline/calibration/tables.js';
import { dataContext, labeledImages, scoreModel } from '../calibration-data.js';
import type { CalibrationCliOptions } from '../calibration-data.js';
import { chainVerdict } from '../../pipeline/cost/verdict.js';
import { measureModels } from '../model-timings.js';
import { formatVerdict, verdictWarnings } from '../format-verdict.js';

export interface ChainCalibrateOptions extends CalibrationCliOptions {
  /** Model refs, tiny first; absent: the config file's `stages:`. */
  stages?: string[];
  out: string;
}

const pct = (x: number | null) => (x === null ? '—' : `${(100 * x).toFixed(2)}%`);

function describe(p: ChainPoint, names: string[]): string {
  const reach = p.reached.map((r, i) => `${names[i]} ${pct(r / p.images)}`).join(', ');
  return `reach ${reach}; ${p.gmacsPerImage.toFixed(3)} GMACs/image (${pct(p.saved)} saved); agreement with last ${pct(p.agreement)} (${earlyAgreement(p)})${p.accuracy !== null ? `; top-1 ${pct(p.accuracy)} vs last alone ${pct(p.lastAccuracy)}` : ''}`;
}

/** Agreement on the images an earlier stage kept, the share the guaranteed rule promises: the last stage agrees with itself on the rest. */
function earlyAgreement(p: ChainPoint): string {
  const early = p.images - p.kept[p.kept.length - 1]!;
  if (early === 0) return 'no image kept before the last stage';
  const agreeing = Math.round(p.agreement * p.images) - (p.images - early);
  return `${pct(agreeing / early)} of the ${early} kept before the last stage`;
}

/** Calibrate a chain and write its calib.json; resolves with the file's content. */
export async function calibrateChainCommand(o: ChainCalibrateOptions): Promise<ChainCalibrationFile> {
  if (o.stages && o.stages.length < 2) throw new Error('--stages needs at least 2 models, tiny first, big last');
  // The accuracy-drop guarantee and the other risk methods cover a little/big pair only.
  if (o.rule === 'guaranteed-drop')
    throw new Error('--rule guaranteed-drop is for a little/big pair; a chain takes guaranteed (the default), tinysaver, no-loss or label-free');
  if (o.method !== undefined && o.method !== 'ltt') throw new Error(`--method ${o.method} is for a little/big pair; a chain's guaranteed rule uses ltt`);
  if (o.metric?.includes('rank')) throw new ConfigError(`--metric rank: ${RANK_TWO_STAGES}`);
  const rule = o.rule ?? 'guaranteed';
  // --stages replaces the config's stages (thresholds are what we are about to choose).
  const stagesOverride = o.stages?.map((m, i, all) => ({ model: resolve(m), ...(i < all.length - 1 ? { threshold: 1 } : {}) }));
  const config = await loadConfig({ file: o.config, overrides: { stages: stagesOverride } });
  const specs = config.stages?.map((st) => st.model);
  if (!specs) throw new Error('no stages to calibrate: pass --stages <tiny> <small> … <big>, or a --config with stages:');
  const fraction = o.calibrationFraction ?? 0.5;
  const ctx = dataContext(config, o);
  const { refs, truth, unlabeled } = await labeledImages(o, ctx);
  const models = [];
  for (const spec of specs) models.push(await scoreModel(spec.name ?? basename(spec.path), spec, refs, ctx));
  const tables = buildChainTables(refs, o.images, models, truth, fraction);
  const delta = o.delta ?? 0.05;
  const options = {
    maxDrop: o.maxDrop ?? 0,
    targetAgreement: o.targetAgreement ?? 0.99,
    metrics: o.metric ?? (rule === 'guaranteed' ? CHAIN_GUARANTEED_METRICS : ALL_METRICS),
  };
  const stages = models.map((m) => ({ name: m.name, gmacsPerImage: m.gmacsPerImage }));
  if (tables.calibration.length === 0) throw new Error('no calibration images could be scored by every model');
  const certified =
    rule === 'guaranteed' ? certifyChain(stages, tables.calibration, { targetAgreement: options.targetAgreement, delta, metrics: options.metrics }) : null;
  const outcome = rule === 'guaranteed' ? certified! : calibrateChain(stages, tables.calibration, { rule, ...options });
  const guarantee = certified?.guarantee;
  const test = tables.test.length > 0 ? evaluateChain(stages, tables.test, outcome.metric, outcome.thresholds) : null;
  const file: ChainCalibrationFile = {
    version: 1,
    kind: 'chain',
    createdAt: new Date().toISOString(),
    stages: models.map((m, i) => ({
      name: m.name,
      path: m.path,
      gmacsPerImage: m.gmacsPerImage,
      pin: m.pin,
      threshold: i < outcome.thresholds.length ? outcome.thresholds[i]! : null,
    })),
    rule,
    reasons: outcome.reasons,
    metric: outcome.metric,
    settings: {
      maxDrop: options.maxDrop,
      targetAgreement: options.targetAgreement,
      metrics: [...options.metrics],
      calibrationFraction: fraction,
      ...(guarantee ? { delta, method: guarantee.method } : {}),
    },
    ...(guarantee ? { guarantee } : {}),
    expected: outcome.point,
    test,
    skippedImages: tables.skipped.length,
    ...(unlabeled ? { unlabeledImages: unlabeled } : {}),
  };
  const measured = await measureModels(
    models.map((m, i) => ({ name: m.name, spec: specs[i]! })),
    refs,
    ctx,
    o,
  );
  file.cost = chainVerdict(measured, outcome.point, tables.calibration, {
    meets: rule === 'guaranteed' ? certified !== null : true,
    label: `${outcome.metric} ≥ ${outcome.thresholds.map((t) => Number(t.toPrecision(4))).join(', ')}`,
    targetAgreement: options.targetAgreement,
    delta,
    prices: config.prices,
  });
  for (const w of verdictWarnings(file.cost)) process.stderr.write(`cascade: warning: ${w}\n`);
  const out = resolve(o.out);
  await makeDir(dirname(out));
  await writeFile(out, `${JSON.stringify(file, null, 2)}\n`);
  const names = models.map((m) => m.name);
  const lines = [
    `chain ${names.join(' → ')}: ${rule}, ${outcome.metric}, thresholds ${outcome.thresholds.map((t) => t.toFixed(4)).join(', ')}`,
    ...outcome.reasons.map((r) => `  ${r}`),
    ...(guarantee
      ? [
          `  promise: ${guarantee.promise}`,
          `  certified (ltt, δ = ${guarantee.delta}${options.metrics.length > 1 ? ` split over ${options.metrics.length} metrics` : ''}) on the ${guarantee.accepted} of ${guarantee.images} calibration images accepted before ${names[names.length - 1]}`,
        ]
      : ['  promise: none beyond a point estimate (about half of new samples fall below it); --rule guaranteed gives one']),
    `  calibration half (${outcome.point.images} images): ${describe(outcome.point, names)}`,
    ...(test ? [`  test half (${test.images} images): ${describe(test, names)}`] : []),
    ...costlierThanLast(outcome.point, names),
    formatVerdict(file.cost),
    `wrote ${out}`,
  ];
  process.stdout.write(o.json ? `${JSON.stringify(file, null, 2)}\n` : `${lines.join('\n')}\n`);
  return file;
}

/**
 * A warning line when the chosen chain costs more than its last stage alone on the calibration
 * half: a weak early stage, which one shared path level holds back with the others, spends its own
 * compute on images it then forwards. Empty when the chain saves compute.
 */
export function costlierThanLast(point: ChainPoint, names: readonly string[]): string[] {
  if (point.saved >= 0) return [];
  const last = names[names.length - 1];
  return [
    `  warning: this chain costs ${pct(-point.saved)} more than ${last} alone on the calibration half; ` +
      `try it without ${names.slice(0, -1).join(' or ')}, or a --rule that is not guaranteed`,
  ];
}

/** True when the config file lists `stages:` (then `cascade calibrate` without model flags calibrates them). */
export async function configHasStages(file: string | undefined): Promise<boolean> {
  if (!file) return false;
  const config = await loadConfig({ file }).catch(() => null);
  return (config?.stages?.length ?? 0) > 0;
}
