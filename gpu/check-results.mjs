// Checks what .gpu/run.sh wrote on a CPU-only machine (gpu/test-bundle.sh): every step ran or
// was skipped for a stated reason, WebGPU's absence is reported, the big-stage bench has CPU
// figures, and the cascade runs labelled every photo, with the WebGPU runs' fallback to the
// CPU giving the CPU run's labels. Usage: node gpu/check-results.mjs <out dir> <bundle dir>
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [out, bundle] = process.argv.slice(2);
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
};
const json = (f) => JSON.parse(readFileSync(join(out, f), 'utf8'));
const jsonl = (f) =>
  readFileSync(join(out, f), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

const photos = readdirSync(join(bundle, 'images')).length;
const steps = Object.fromEntries(jsonl('steps.jsonl').map((s) => [s.step, s]));
for (const name of ['unpack', 'webgpu-probe', 'bench', 'cascade-runs', 'report'])
  check(steps[name]?.status === 'ok', `step ${name} ok (${JSON.stringify(steps[name] ?? null)})`);
check(['ok', 'skipped'].includes(steps.export?.status), `step export ok or skipped with a reason (${steps.export?.note ?? steps.export?.status})`);
check(existsSync(join(out, 'env.txt')) && /== nvidia-smi/.test(readFileSync(join(out, 'env.txt'), 'utf8')), 'env.txt names the GPU section');

const probe = json('webgpu-probe.json');
check(typeof probe.available === 'boolean', `webgpu-probe.json says whether WebGPU has an adapter (${JSON.stringify(probe)})`);
const md = readFileSync(join(out, 'results.md'), 'utf8');
if (!probe.available) check(/WebGPU: NO ADAPTER/.test(md), 'results.md says WebGPU found no adapter');

const bench = json('big-bench.json');
const mbv2 = bench.models.find((m) => m.name === 'mobilenetv2-int8');
check(!!mbv2, 'the bench measured the bundled big candidate (mobilenetv2-int8)');
const cpuCells = mbv2?.providers?.cpu?.batches ?? [];
check(
  cpuCells.length >= 1 && cpuCells.every((c) => c.imgPerS > 0),
  `big-stage CPU images/s per batch size: ${cpuCells.map((c) => `b${c.batch} ${c.imgPerS}`).join(', ')}`,
);
check(mbv2?.providers?.cpu?.photos?.images > 0, `the CPU went through the photos (${mbv2?.providers?.cpu?.photos?.images})`);
const gpu = mbv2?.providers?.webgpu;
check(
  probe.available ? (gpu?.batches ?? []).length > 0 : /fell back|could not/.test(gpu?.error ?? ''),
  `WebGPU in the bench: ${gpu?.error ?? `${gpu?.batches?.length} cells`}`,
);

const runs = json('runs/runs.json');
const byId = Object.fromEntries(runs.map((r) => [r.id, r]));
for (const id of ['mobilenetv2-cpu', 'mobilenetv2-webgpu-split', 'mobilenetv2-webgpu-one-process']) {
  const r = byId[id];
  check(r?.ok === true, `run ${id} completed${r?.error ? `: ${r.error}` : ''}`);
  if (!r?.ok) continue;
  check(
    r.summary.images === photos && r.summary.labeled === photos && r.summary.errors === 0,
    `run ${id} labelled all ${photos} photos (${r.summary.labeled} labelled, ${r.summary.errors} errors)`,
  );
  check(existsSync(join(r.out, 'summary.json')) && existsSync(join(r.out, 'manifest.jsonl')), `run ${id} wrote summary.json and manifest.jsonl`);
  const big = r.summary.stages.at(-1);
  const little = r.summary.stages[0];
  if (id.endsWith('split')) {
    check(JSON.stringify(little.providers) === '["cpu"]', `split run: little stage on the CPU (${little.providers})`);
    check(
      big.probeTolerance === 1 && typeof big.probeMaxDiff === 'number',
      `split run: big probe difference recorded (${big.probeMaxDiff}, tolerance ${big.probeTolerance})`,
    );
    check(big.workers === 1 && little.workers === 1, 'split run: one worker process per stage');
  }
  if (!probe.available) check(JSON.stringify(big.providers) === '["cpu"]', `${id}: without an adapter the big stage ran on the CPU (${big.providers})`);
}
const results = json('results.json');
for (const a of results.cascade.agreement) {
  // Without a GPU every run is on the CPU with exact numerics: the labels must be identical.
  if (!probe.available) check(a.rate === 1, `labels of ${a.run} equal those of ${a.reference} (${a.same}/${a.rows})`);
  else check(a.rows === photos, `${a.run} compared with ${a.reference} on every photo (${a.same}/${a.rows} agree)`);
}
check(results.cascade.agreement.length >= 2, `agreement of the WebGPU runs with the CPU run reported (${results.cascade.agreement.length})`);
const mbv2Cpu = results.cascade.runs.find((r) => r.id === 'mobilenetv2-cpu');
check(mbv2Cpu?.top1VsGroundTruth?.rate > 0.5, `top-1 of the real-weight cascade against ground truth: ${mbv2Cpu?.top1VsGroundTruth?.rate}`);

if (failures.length) {
  console.error(`\n${failures.length} check(s) failed:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log(`\nall ${photos} photos labelled in every run; results in ${out}`);
