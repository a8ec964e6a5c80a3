/**
 * Scores a manifest against ImageNet-style ground truth (groundtruth.csv: file,class_index,…).
 * Usage: node --import tsx bench/score-manifest.ts <manifest.jsonl> [groundtruth.csv]
 */
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ManifestRow } from '../pipeline/results/manifest.js';

const [manifestPath, truthPath = join(process.env.CASCADE_ASSETS ?? '../shared/assets', 'labels', 'groundtruth.csv')] = process.argv.slice(2);
if (!manifestPath) throw new Error('usage: score-manifest.ts <manifest.jsonl> [groundtruth.csv]');

const truth = new Map(
  (await readFile(truthPath, 'utf8'))
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => [line.split(',')[0]!, Number(line.split(',')[1])] as const),
);
const rows = (await readFile(manifestPath, 'utf8'))
  .trim()
  .split('\n')
  .map((l) => ManifestRow.parse(JSON.parse(l)));
const byStage = new Map<string, { n: number; correct: number }>();
let correct = 0;
let scored = 0;
for (const row of rows) {
  const label = truth.get(basename(row.key));
  if (label === undefined) continue;
  scored++;
  const stage = row.stage ?? 'error';
  const s = byStage.get(stage) ?? { n: 0, correct: 0 };
  s.n++;
  if (row.label === label) {
    s.correct++;
    correct++;
  }
  byStage.set(stage, s);
}
const pct = (a: number, b: number) => `${((100 * a) / Math.max(b, 1)).toFixed(2)}%`;
console.log(`rows ${rows.length}, scored ${scored}, top-1 ${pct(correct, scored)}`);
for (const [stage, s] of byStage) console.log(`  ${stage}: ${s.n} images, top-1 ${pct(s.correct, s.n)}`);
