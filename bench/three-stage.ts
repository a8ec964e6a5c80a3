/**
 * Real-model demonstration of N-stage cascades: the 717 sample photos through
 *   2-stage  shufflenet → ensemble
 *   3-stage  squeezenet → mobilenetv2 → ensemble
 * with the whole pipeline (`cascade run`, private redis-server), printing MACs per image, the
 * fraction of images each stage ran on, and top-1 against labels/groundtruth.csv.
 * Usage: node --import tsx bench/three-stage.ts [--thresholds 0.5,0.5] [--two 0.5] [--json out.json]
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { runCommand } from '../cli/commands/run.js';
import { ManifestRow, type RunSummary } from '../pipeline/manifest.js';
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

async function runCascade(c: Cascade, images: string, truth: Map<string, number>, work: string) {
  const config = join(work, `${c.label.replace(/\W+/g, '-')}.yaml`);
  await writeFile(config, stringify({ stages: c.stages, batchSize: 16, inferenceThreads: 1, concurrency: 2 }));
  const out = join(work, `out-${c.label.replace(/\W+/g, '-')}`);
  const summary: RunSummary = await runCommand(images, { out, config, progress: false, json: false });
  const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n').map((l) => ManifestRow.parse(JSON.parse(l)));
  return { cascade: c, summary, ...score(rows, truth) };
}

const { values } = parseArgs({ options: { thresholds: { type: 'string', default: '0.5,0.5' }, two: { type: 'string', default: '0.5' }, json: { type: 'string' } } });
const assets = findAssets();
if ('missing' in assets) {
  console.log(`skipped: ${assets.missing}`);
  process.exit(0);
}
const [t1, t2] = values.thresholds!.split(',').map(Number) as [number, number];
const cascades: Cascade[] = [
  { label: `2-stage shufflenet → ensemble @${values.two}`, stages: [{ name: 'little', model: spec('shufflenet'), threshold: Number(values.two) }, { name: 'big', model: spec('ensemble') }] },
  {
    label: `3-stage squeezenet → mobilenetv2 → ensemble @${t1}/${t2}`,
    stages: [{ name: 'little', model: spec('squeezenet'), threshold: t1 }, { name: 'mid', model: spec('mobilenetv2'), threshold: t2 }, { name: 'big', model: spec('ensemble') }],
  },
];
const truth = new Map(
  (await readFile(join(assets.dir, 'labels', 'groundtruth.csv'), 'utf8'))
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => [line.split(',')[0]!, Number(line.split(',')[1])] as const),
);
const work = await mkdtemp(join(tmpdir(), 'cascade-three-stage-'));
try {
  const results = [];
  for (const c of cascades) results.push(await runCascade(c, join(assets.dir, 'images'), truth, work));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    '| cascade | GMACs/image | vs big-only | images per stage (fraction of all) | top-1 | top-1 of each stage\'s final answers | wall s |',
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
    lines.push(`| ${r.cascade.label} | ${(s.macs.cascadeG / inferred).toFixed(3)} | ${pct(1 - s.macs.saved)} | ${reach} | ${pct(r.top1)} | ${perStage.join(', ')} | ${s.wallSeconds.toFixed(1)} |`);
  }
  console.log(lines.join('\n'));
  if (values.json) await writeFile(values.json, JSON.stringify(results.map((r) => ({ label: r.cascade.label, top1: r.top1, summary: r.summary })), null, 2));
} finally {
  await rm(work, { recursive: true, force: true });
}
