// Gathers what run.sh measured into <out>/results.json and a readable <out>/results.md: the
// environment (GPU, driver, Vulkan ICD), whether WebGPU found an adapter, big-stage images/s per
// provider and batch size with WebGPU's speed-up and top-1 agreement with the CPU on the same
// photos, the cascade runs (end-to-end images/s, providers per stage, probe differences) and
// the agreement of each WebGPU run's labels with the CPU run of the same models.
// Usage: node gpu/report.mjs <out dir> [<groundtruth.csv>]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const [outDir, gtFile] = process.argv.slice(2);
const read = (f) => {
  try {
    return readFileSync(join(outDir, f), 'utf8');
  } catch {
    return null;
  }
};
const json = (f) => {
  const t = read(f);
  try {
    return t ? JSON.parse(t) : null;
  } catch {
    return null;
  }
};
const jsonl = (f) =>
  (read(f) ?? '')
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l));
const sh = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 15_000 }).trim();
  } catch {
    return null;
  }
};

// Environment.
const gpus = (sh('nvidia-smi', ['--query-gpu=name,driver_version,memory.total,compute_cap', '--format=csv,noheader']) ?? '')
  .split('\n')
  .filter(Boolean)
  .map((l) => {
    const [name, driver, memory, computeCap] = l.split(',').map((x) => x.trim());
    return { name, driver, memory, computeCap };
  });
const exportLines = jsonl('export.jsonl');
const icdFile = process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES || null;
const environment = {
  gpus,
  nvidiaSmi: gpus.length > 0 ? 'ok' : sh('nvidia-smi', ['-L']) === null ? 'nvidia-smi not found or failed' : 'no GPU listed',
  vulkan: {
    icd: icdFile,
    icdJson: icdFile && existsSync(icdFile) ? readFileSync(icdFile, 'utf8').replace(/\s+/g, ' ').trim() : null,
    loader: process.env.GPU_VULKAN_LOADER ?? null,
  },
  nvidiaDriverCapabilities: process.env.NVIDIA_DRIVER_CAPABILITIES ?? null,
  node: process.version,
  cpus: sh('nproc', []),
  torch: exportLines.find((l) => l.torch) ?? null,
};
try {
  environment.onnxruntime = JSON.parse(readFileSync(new URL('../node_modules/onnxruntime-node/package.json', import.meta.url), 'utf8')).version;
} catch {}

const probe = json('webgpu-probe.json');
const webgpu = probe?.available ? { available: true, openS: probe.openS } : { available: false, reason: probe?.error ?? 'the probe did not run' };

// Big stage.
const bench = json('big-bench.json');
const bigStage = { rows: bench?.rows ?? [], speedup: [], agreement: {}, placement: {}, errors: {} };
for (const m of bench?.models ?? []) {
  for (const [ep, r] of Object.entries(m.providers ?? {})) {
    if (r.error) bigStage.errors[`${m.name} ${ep}`] = r.error;
    if (r.placement && !r.placement.error) bigStage.placement[`${m.name} ${ep}`] = placementLine(r.placement);
    else if (r.placement?.error) bigStage.errors[`${m.name} ${ep} placement`] = r.placement.error;
  }
  for (const [ep, a] of Object.entries(m.agreement ?? {})) bigStage.agreement[`${m.name} ${ep}`] = a;
  const cpu = m.providers?.cpu?.batches ?? [];
  for (const [ep, r] of Object.entries(m.providers ?? {})) {
    if (ep === 'cpu') continue;
    for (const cell of r.batches ?? []) {
      const ref = cpu.find((c) => c.batch === cell.batch && c.imgPerS);
      if (ref && cell.imgPerS)
        bigStage.speedup.push({
          model: m.name,
          provider: ep,
          batch: cell.batch,
          imgPerS: cell.imgPerS,
          cpuImgPerS: ref.imgPerS,
          speedup: round(cell.imgPerS / ref.imgPerS, 2),
        });
    }
  }
}

// Cascade runs.
const runs = json('runs/runs.json') ?? [];
const truth = groundTruth(gtFile);
const cascade = { runs: [], agreement: [] };
const manifests = new Map();
for (const r of runs) {
  const row = { id: r.id, mode: r.mode, big: basename(r.big ?? ''), ok: r.ok ?? false, seconds: r.seconds };
  if (r.skipped) row.skipped = r.skipped;
  if (r.error) row.error = r.error;
  if (r.summary) {
    const s = r.summary;
    const big = s.stages.at(-1);
    Object.assign(row, {
      images: s.images,
      errors: s.errors,
      wallSeconds: round(s.wallSeconds, 2),
      imagesPerSecond: round(s.imagesPerSecond, 1),
      fractionToBig: round(s.fractionToBig, 3),
      providers: Object.fromEntries(s.stages.map((st) => [st.name, st.providers ?? null])),
      bigProbeMaxDiff: big?.probeMaxDiff ?? null,
      bigProbeTolerance: big?.probeTolerance ?? null,
      bigMsPerImageInfer: big?.msPerImage?.infer ?? null,
    });
    const m = manifest(join(r.out, 'manifest.jsonl'));
    if (m) {
      manifests.set(r.id, { run: r, rows: m });
      if (truth) row.top1VsGroundTruth = top1(m, truth);
    }
  }
  cascade.runs.push(row);
}
for (const [id, b] of manifests) {
  if (b.run.mode === 'cpu') continue;
  const a = [...manifests.values()].find((x) => x.run.mode === 'cpu' && x.run.big === b.run.big);
  if (a) cascade.agreement.push({ reference: a.run.id, run: id, ...agree(a.rows, b.rows) });
}

const results = { generatedAt: new Date().toISOString(), webgpu, environment, steps: jsonl('steps.jsonl'), export: exportLines, bigStage, cascade };
writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(outDir, 'results.md'), markdown(results));
console.log(markdown(results));

function markdown(r) {
  const L = [];
  L.push('# Cascade GPU run', '');
  const g = r.environment.gpus[0];
  L.push(`- GPU: ${g ? `${r.environment.gpus.length} × ${g.name}, driver ${g.driver}, ${g.memory}` : r.environment.nvidiaSmi}`);
  L.push(`- Vulkan ICD: ${r.environment.vulkan.icd ?? 'none found'}; loader: ${r.environment.vulkan.loader ?? '?'}`);
  L.push(`- WebGPU: ${r.webgpu.available ? `adapter found (tiny session in ${r.webgpu.openS} s)` : `NO ADAPTER: ${r.webgpu.reason}`}`);
  L.push(
    `- node ${r.environment.node}, onnxruntime ${r.environment.onnxruntime ?? '?'}, ${r.environment.cpus ?? '?'} CPUs${r.environment.torch ? `, torch ${r.environment.torch.torch} (CUDA ${r.environment.torch.cuda})` : ', no torch'}`,
  );
  L.push('', "## Big stage (Cascade's InferencePool on photos), images/s", '');
  if (r.bigStage.rows.length) {
    L.push('| model | provider | batch | img/s | img/s in session.run | ms/call |', '|---|---|---|---|---|---|');
    for (const x of r.bigStage.rows) L.push(`| ${x.model} | ${x.provider} | ${x.batch} | ${x.imgPerS} | ${x.sessionImgPerS} | ${x.msPerCall} |`);
  } else L.push('(no figures)');
  if (r.bigStage.speedup.length) {
    L.push('', '| model | provider | batch | speed-up vs cpu |', '|---|---|---|---|');
    for (const x of r.bigStage.speedup) L.push(`| ${x.model} | ${x.provider} | ${x.batch} | ${x.speedup}× |`);
  }
  const agreements = Object.entries(r.bigStage.agreement);
  if (agreements.length) {
    L.push(
      '',
      '| model vs cpu | photos | top-1 agree | decisive photos agreeing | max abs Δp | mean abs Δp | median top-1 margin |',
      '|---|---|---|---|---|---|---|',
    );
    for (const [k, a] of agreements)
      L.push(
        `| ${k} | ${a.images} | ${a.top1Agree} (${pct(a.top1AgreeRate)}) | ${a.decisiveAgree}/${a.decisive} | ${a.maxAbsDiff} | ${a.meanAbsDiff} | ${a.medianTop1Margin} |`,
      );
  }
  for (const [k, line] of Object.entries(r.bigStage.placement)) L.push(`- placement ${k}: ${line}`);
  for (const [k, e] of Object.entries(r.bigStage.errors)) L.push(`- ${k}: ${e}`);
  L.push('', '## Cascade runs (little: ShuffleNet int8 on the CPU)', '');
  if (r.cascade.runs.length) {
    L.push('| run | mode | images | images/s | wall s | to big | providers | big probe Δ (tol.) | top-1 vs truth |', '|---|---|---|---|---|---|---|---|---|');
    for (const x of r.cascade.runs) {
      if (!x.ok) {
        L.push(`| ${x.id} | ${x.mode} | ${x.skipped ? `skipped: ${x.skipped}` : `FAILED: ${x.error}`} | | | | | | |`);
        continue;
      }
      const prov = Object.entries(x.providers ?? {})
        .map(([s, p]) => `${s}: ${p?.join('+') ?? '?'}`)
        .join(', ');
      L.push(
        `| ${x.id} | ${x.mode} | ${x.images} | ${x.imagesPerSecond} | ${x.wallSeconds} | ${pct(x.fractionToBig)} | ${prov} | ${x.bigProbeMaxDiff ?? '?'} (${x.bigProbeTolerance ?? '?'}) | ${x.top1VsGroundTruth ? pct(x.top1VsGroundTruth.rate) : ''} |`,
      );
    }
  }
  if (r.cascade.agreement.length) {
    L.push('', '| run vs cpu run | same label, all rows | same label, rows both labelled by big |', '|---|---|---|');
    for (const a of r.cascade.agreement) L.push(`| ${a.run} vs ${a.reference} | ${a.same}/${a.rows} (${pct(a.rate)}) | ${a.bigSame}/${a.bigRows} |`);
  }
  const bad = r.steps.filter((s) => s.status !== 'ok');
  if (bad.length) L.push('', '## Steps not ok', '', ...bad.map((s) => `- ${s.step}: ${s.status}${s.note ? ` (${s.note})` : ''}`));
  return `${L.join('\n')}\n`;
}

function placementLine(p) {
  const shares = (p.providers ?? []).map((s) => {
    const ops = Object.entries(s.ops)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([o, n]) => `${o} ${n}`);
    return `${s.provider} ${s.nodes} nodes (${ops.join(', ')})`;
  });
  return `${shares.join('; ')}; ${p.segments} segments, ${p.copies} copies`;
}

function manifest(file) {
  if (!existsSync(file)) return null;
  const rows = new Map();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    rows.set(r.key, r);
  }
  return rows;
}

function agree(a, b) {
  let rows = 0;
  let same = 0;
  let bigRows = 0;
  let bigSame = 0;
  for (const [key, ra] of a) {
    const rb = b.get(key);
    if (!rb || ra.label === null || rb.label === null) continue;
    rows++;
    if (ra.label === rb.label) same++;
    if (ra.stage === 'big' && rb.stage === 'big') {
      bigRows++;
      if (ra.label === rb.label) bigSame++;
    }
  }
  return { rows, same, rate: rows ? round(same / rows, 4) : null, bigRows, bigSame };
}

function groundTruth(file) {
  if (!file || !existsSync(file)) return null;
  const map = new Map();
  for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
    const [name, cls] = line.split(',');
    if (name && cls !== undefined) map.set(name, Number(cls));
  }
  return map;
}

function top1(rows, truth) {
  let n = 0;
  let ok = 0;
  for (const [key, r] of rows) {
    const t = truth.get(basename(key));
    if (t === undefined || r.label === null) continue;
    n++;
    if (r.label === t) ok++;
  }
  return { images: n, correct: ok, rate: n ? round(ok / n, 4) : null };
}

function round(x, d) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

function pct(x) {
  return x === null || x === undefined ? '?' : `${(x * 100).toFixed(1)}%`;
}
