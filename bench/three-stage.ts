/**
 * Real-model demonstration of N-stage cascades: the 717 sample photos through
 *   2-stage  shufflenet → ensemble
 *   3-stage  squeezenet → mobilenetv2 → ensemble
 * with the whole pipeline (`cascade run`, private redis-server), printing MACs per image, the
 * fraction of images each stage ran on, and top-1 against labels/groundtruth.csv.
 * Usage: node --import tsx bench/three-stage.ts [--thresholds 0.5,0.5] [--two 0.5] [--search | --search-only] [--json out.json]
 *
 * --search first scores every model once on every photo (cached like `cascade calibrate`), then
 * sweeps thresholds on cached probabilities: chosen on the even-numbered photos, reported on the
 * odd ones, so the chosen pair is not judged on the photos that chose it.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { dataContext, scoreModel } from '../cli/calibration-data.js';
import { runCommand } from '../cli/commands/run.js';
import { loadConfig, loadModelSpec } from '../config/load-config.js';
import { accepts, predict } from '../pipeline/routing.js';
import { ManifestRow, type RunSummary } from '../pipeline/results/manifest.js';
import { MANIFEST_KEY } from '../pipeline/results/output-layout.js';
import { findAssets, REPO_ROOT } from './assets.js';

const spec = (name: string) => join(REPO_ROOT, 'config/models', `${name}.yaml`);

interface Cascade {
  label: string;
  stages: Array<{ name: string; model: string; threshold?: number }>;
}

/** Top-1 of a manifest against groundtruth.csv (file → class index), overall and per stage. */
function score(rows: ManifestRow[], truth: Map<string, number>) {
  const per = new Map<string, { n: number; correct: number }>();
  let correct = 0;
  for (const row of rows) {
    const ok = row.label !== null && row.label === truth.get(basename(row.key));
    if (ok) correct++;
    const s = per.get(row.stage ?? 'error') ?? { n: 0, correct: 0 };
    s.n++;
    if (ok) s.correct++;
    per.set(row.stage ?? 'error', s);
  }
  return { top1: correct / rows.length, per };
}

/** groundtruth.csv as file name → class index. */
async function readTruth(assetsDir: string): Promise<Map<string, number>> {
  return new Map(
    (await readFile(join(assetsDir, 'labels', 'groundtruth.csv'), 'utf8'))
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => [line.split(',')[0]!, Number(line.split(',')[1])] as const),
  );
}

async function runCascade(c: Cascade, images: string, truth: Map<string, number>, work: string) {
  const config = join(work, `${c.label.replace(/\W+/g, '-')}.yaml`);
  await writeFile(config, stringify({ stages: c.stages, batchSize: 16, inferenceThreads: 1, concurrency: 2 }));
  const out = join(work, `out-${c.label.replace(/\W+/g, '-')}`);
  const summary: RunSummary = await runCommand(images, { out, config, progress: false, json: false });
  const rows = (await readFile(join(out, MANIFEST_KEY), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
  return { cascade: c, summary, ...score(rows, truth) };
}

/** One model's top-1 label and maxprob per photo (from cached probabilities). */
type Answers = Map<string, { label: number; conf: number }>;

/** GMACs per image and top-1 of a chain at `thresholds` (one per stage but the last) on `refs`. */
function simulate(chain: Array<{ answers: Answers; gmacs: number }>, thresholds: number[], refs: string[], truth: Map<string, number>) {
  let gmacs = 0;
  let correct = 0;
  const reached = chain.map(() => 0);
  for (const ref of refs) {
    for (const [i, stage] of chain.entries()) {
      const a = stage.answers.get(ref)!;
      gmacs += stage.gmacs;
      reached[i]! += 1;
      if (i === chain.length - 1 || accepts(a.conf, thresholds[i]!)) {
        if (a.label === truth.get(basename(ref))) correct++;
        break;
      }
    }
  }
  return { gmacs: gmacs / refs.length, top1: correct / refs.length, reach: reached.map((n) => n / refs.length) };
}

/** Score the models once (cached), sweep thresholds on half the photos, report on the other half. */
async function search(images: string, truth: Map<string, number>): Promise<{ three: [number, number]; shuffleThree: [number, number] }> {
  const names = ['shufflenet', 'squeezenet', 'mobilenetv2', 'ensemble'] as const;
  const config = await loadConfig({ overrides: { little: spec('shufflenet'), big: spec('ensemble') }, env: { ...process.env, REDIS_URL: '' } });
  const ctx = dataContext(config, { progress: false });
  const refs = (await readdirSorted(images)).map((n) => join(images, n));
  const models = {} as Record<(typeof names)[number], { answers: Answers; gmacs: number }>;
  for (const name of names) {
    const scored = await scoreModel(name, await loadModelSpec(spec(name)), refs, ctx);
    const answers: Answers = new Map();
    for (const [ref, probs] of scored.scored.probs) {
      const p = predict(probs, 'maxprob');
      answers.set(ref, { label: p.label, conf: p.confidence });
    }
    models[name] = { answers, gmacs: scored.gmacsPerImage };
  }
  const ok = refs.filter((r) => names.every((n) => models[n].answers.has(r)));
  const choose = ok.filter((_, i) => i % 2 === 0);
  const report = ok.filter((_, i) => i % 2 === 1);
  const grid = Array.from({ length: 19 }, (_, i) => Number(((i + 1) * 0.05).toFixed(2)));
  const two = [models.shufflenet, models.ensemble];
  const three = [models.squeezenet, models.mobilenetv2, models.ensemble];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const base = simulate(two, [0.5], choose, truth);
  // The 3-stage pair that matches the 2-stage@0.5 accuracy at the least compute; if none can,
  // the most accurate pair within the same compute.
  const bestPair = (chain: typeof three) => {
    const pairs = grid.flatMap((a) => grid.map((b) => ({ t: [a, b] as [number, number], r: simulate(chain, [a, b], choose, truth) })));
    const matching = pairs.filter((p) => p.r.top1 >= base.top1).sort((x, y) => x.r.gmacs - y.r.gmacs);
    const within = pairs.filter((p) => p.r.gmacs <= base.gmacs).sort((x, y) => y.r.top1 - x.r.top1);
    const t = (matching[0] ?? within[0] ?? pairs.sort((x, y) => y.r.top1 - x.r.top1)[0]!).t;
    return { t, why: matching[0] ? 'matches 2-stage top-1, least compute' : 'best top-1 within 2-stage compute' };
  };
  const picked = bestPair(three);
  const shuffleThree = [models.shufflenet, models.mobilenetv2, models.ensemble];
  const pickedShuffle = bestPair(shuffleThree);
  console.log(`search on ${choose.length} photos (even), reported on ${report.length} (odd):`);
  const line = (label: string, chain: typeof two, t: number[]) => {
    const c = simulate(chain, t, choose, truth);
    const r = simulate(chain, t, report, truth);
    console.log(
      `  ${label.padEnd(44)} choose: ${c.gmacs.toFixed(3)} GMACs ${pct(c.top1)} | report: ${r.gmacs.toFixed(3)} GMACs ${pct(r.top1)}, reach ${r.reach.map(pct).join(' / ')}`,
    );
  };
  for (const [label, m] of Object.entries(models)) line(`${label} alone`, [m], []);
  line('2-stage shufflenet → ensemble @0.5', two, [0.5]);
  line('3-stage @0.5/0.5', three, [0.5, 0.5]);
  line(`3-stage @${picked.t.join('/')} (${picked.why})`, three, picked.t);
  line('3-stage shufflenet → mobilenetv2 → ensemble @0.5/0.5', shuffleThree, [0.5, 0.5]);
  line(`3-stage shufflenet → mobilenetv2 → ensemble @${pickedShuffle.t.join('/')} (${pickedShuffle.why})`, shuffleThree, pickedShuffle.t);
  const mbv2 = [models.mobilenetv2, models.ensemble];
  const bestTwoMbv2 = grid
    .map((t) => ({ t, r: simulate(mbv2, [t], choose, truth) }))
    .filter((p) => p.r.top1 >= base.top1)
    .sort((x, y) => x.r.gmacs - y.r.gmacs)[0];
  if (bestTwoMbv2) line(`2-stage mobilenetv2 → ensemble @${bestTwoMbv2.t}`, mbv2, [bestTwoMbv2.t]);
  return { three: picked.t, shuffleThree: pickedShuffle.t };
}

/** JPEG names of a folder, sorted. */
async function readdirSorted(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /\.jpe?g$/i.test(n)).sort();
}

const { values } = parseArgs({
  options: {
    thresholds: { type: 'string', default: '0.5,0.5' },
    two: { type: 'string', default: '0.5' },
    search: { type: 'boolean', default: false },
    'search-only': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const assets = findAssets();
if ('missing' in assets) {
  console.log(`skipped: ${assets.missing}`);
  process.exit(0);
}
const truthEarly = await readTruth(assets.dir);
const searched = values.search || values['search-only'] ? await search(join(assets.dir, 'images'), truthEarly) : null;
if (values['search-only']) process.exit(0);
const [t1, t2] = searched?.three ?? (values.thresholds!.split(',').map(Number) as [number, number]);
const cascades: Cascade[] = [
  {
    label: `2-stage shufflenet → ensemble @${values.two}`,
    stages: [
      { name: 'little', model: spec('shufflenet'), threshold: Number(values.two) },
      { name: 'big', model: spec('ensemble') },
    ],
  },
  {
    label: `3-stage squeezenet → mobilenetv2 → ensemble @${t1}/${t2}`,
    stages: [
      { name: 'little', model: spec('squeezenet'), threshold: t1 },
      { name: 'mid', model: spec('mobilenetv2'), threshold: t2 },
      { name: 'big', model: spec('ensemble') },
    ],
  },
];
if (searched) {
  const [a, b] = searched.shuffleThree;
  cascades.push({
    label: `3-stage shufflenet → mobilenetv2 → ensemble @${a}/${b}`,
    stages: [
      { name: 'little', model: spec('shufflenet'), threshold: a },
      { name: 'mid', model: spec('mobilenetv2'), threshold: b },
      { name: 'big', model: spec('ensemble') },
    ],
  });
}
if (searched)
  cascades.push({
    label: '3-stage squeezenet → mobilenetv2 → ensemble @0.5/0.5',
    stages: [
      { name: 'little', model: spec('squeezenet'), threshold: 0.5 },
      { name: 'mid', model: spec('mobilenetv2'), threshold: 0.5 },
      { name: 'big', model: spec('ensemble') },
    ],
  });
const truth = truthEarly;
const work = await mkdtemp(join(tmpdir(), 'cascade-three-stage-'));
try {
  const results = [];
  for (const c of cascades) results.push(await runCascade(c, join(assets.dir, 'images'), truth, work));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    "| cascade | GMACs/image | vs big-only | images per stage (fraction of all) | top-1 | top-1 of each stage's final answers | wall s |",
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const s = r.summary;
    const inferred = s.stages[0]!.images - s.stages[0]!.errors;
    const reach = s.stages.map((st) => `${st.name} ${st.images} (${pct(st.reach ?? 0)})`).join(', ');
    const perStage = s.stages.map((st) => {
      const p = r.per.get(st.name);
      return `${st.name} ${p ? `${pct(p.correct / p.n)} of ${p.n}` : '—'}`;
    });
    lines.push(
      `| ${r.cascade.label} | ${(s.macs.cascadeG / inferred).toFixed(3)} | ${pct(1 - s.macs.saved)} | ${reach} | ${pct(r.top1)} | ${perStage.join(', ')} | ${s.wallSeconds.toFixed(1)} |`,
    );
  }
  console.log(lines.join('\n'));
  if (values.json)
    await writeFile(
      values.json,
      JSON.stringify(
        results.map((r) => ({ label: r.cascade.label, top1: r.top1, summary: r.summary })),
        null,
        2,
      ),
    );
} finally {
  await rm(work, { recursive: true, force: true });
}
