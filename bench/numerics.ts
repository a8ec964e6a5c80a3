/**
 * int8 numerics across CPUs: runs the real models on the first N labeled photos in both
 * numerics modes ('exact': session.x64quantprecision = 1, 'native': ORT's default kernels) and
 * reports top-1 per model and mode. `--json` writes every photo's top-1 class, so that a run
 * under CPU emulation can be compared with a native one (`--compare native.json`):
 *
 *   node --import tsx bench/numerics.ts --photos 717 --json native.json
 *   qemu-x86_64 -cpu Haswell $(command -v node) --import tsx bench/numerics.ts \
 *     --photos 100 --models shufflenet,mobilenetv2 --cpu-label haswell --json haswell.json --compare native.json
 *
 * Under qemu-user /proc/cpuinfo still describes the host, hence `--cpu-label`. Sessions run in
 * this process (no worker threads), one model at a time.
 *
 * Mode 'auto' makes a worker's choice first (the real ModelCache: exact reference, native probe,
 * fallback; no probe cache) and then labels like the mode it chose. `--rounds N` repeats every
 * model and mode N times, interleaved, and reports CPU time per photo (process CPU, ORT's threads
 * included) with the share of native's saving over exact that auto keeps:
 *
 *   node --import tsx bench/numerics.ts --photos 150 --models shufflenet,mobilenetv2,ensemble \
 *     --modes exact,native,auto --rounds 5 --threads 1
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../config/load-config.js';
import type { ModelSpec as ModelSpecSchema, Numerics, SessionNumerics } from '../config/schema.js';
import { preprocessImage } from '../pipeline/image/preprocess.js';
import { ModelSession } from '../pipeline/inference/model-session.js';
import { ModelCache } from '../pipeline/models/model-cache.js';
import { planModel } from '../pipeline/models/plan-model.js';
import { fetchRef } from '../pipeline/storage/fetch-image.js';
import { Stores } from '../pipeline/storage/stores.js';
import { topK } from '../pipeline/routing.js';
import { findAssets, listPhotos, REPO_ROOT } from './assets.js';

export const ALL_MODELS = ['squeezenet', 'shufflenet', 'mobilenetv2', 'ensemble'];

export interface ModeResult {
  /** Top-1 accuracy against labels/groundtruth.csv, %. */
  top1: number;
  correct: number;
  /** Top-1 class per photo, in `photos` order. */
  answers: number[];
  /** The top-1 class's probability per photo (how far apart two CPUs' probabilities are). */
  confidences: number[];
  /** Inference time per photo, ms (batch 1). */
  msPerImage: number;
  /** Process CPU time per photo, ms, in each round (batch 1; ORT's threads included). */
  cpuMsPerImage: number[];
  /** Mode 'auto': the numerics a worker chose on this CPU. */
  chosen?: SessionNumerics;
}

export interface NumericsReport {
  cpu: { label: string; flags: string[] };
  photos: string[];
  /** sha256 (first 16 hex) of each photo's input tensor per model: preprocessing must agree for answers to be compared. */
  inputs: Record<string, string[]>;
  models: Record<string, Partial<Record<Numerics, ModeResult>>>;
}

export interface NumericsOptions {
  assetsDir: string;
  photos: number;
  models: readonly string[];
  modes: readonly Numerics[];
  /** Every model and mode this many times, interleaved (default 1). */
  rounds?: number;
  intraOpThreads?: number;
  cpuLabel?: string;
  log?: (line: string) => void;
}

/** The vector-instruction flags of /proc/cpuinfo that decide ORT's int8 kernels (the host's, under qemu-user). */
export function cpuFlags(): string[] {
  if (!existsSync('/proc/cpuinfo')) return [];
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  return [...new Set(text.match(/\b(avx512_vnni|avx_vnni|avx2)\b/g) ?? [])].sort();
}

/** How many photos two answer lists classify differently. */
export function countDifferences(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`answer lists differ in length: ${a.length} vs ${b.length}`);
  return a.reduce((n, x, i) => n + (x === b[i] ? 0 : 1), 0);
}

/** Run each model in each numerics mode on the first `photos` photos (name order). */
export async function measureNumerics(o: NumericsOptions): Promise<NumericsReport> {
  const log = o.log ?? (() => {});
  const paths = await listPhotos(o.assetsDir, o.photos);
  const csv = await readFile(join(o.assetsDir, 'labels', 'groundtruth.csv'), 'utf8');
  const truth = new Map(
    csv
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => [line.split(',')[0]!, Number(line.split(',')[1])] as const),
  );
  const env = { ...process.env, CASCADE_ASSETS: o.assetsDir };
  const report: NumericsReport = { cpu: { label: o.cpuLabel ?? 'native', flags: cpuFlags() }, photos: paths.map((p) => basename(p)), inputs: {}, models: {} };
  const bytes = await Promise.all(paths.map((p) => readFile(p)));
  // Preprocessed tensors and their hashes per distinct preprocessing, shared by the models that use it.
  const tensors = new Map<string, { inputs: Array<Float32Array | Uint16Array>; hashes: string[] }>();

  const specs = new Map<string, ModelSpecSchema>();
  for (const name of o.models) specs.set(name, await loadModelSpec(join(REPO_ROOT, 'config', 'models', `${name}.yaml`), env));
  const chosen = new Map<string, SessionNumerics>();
  for (let round = 0; round < (o.rounds ?? 1); round++) {
    for (const name of o.models) {
      const spec = specs.get(name)!;
      report.models[name] ??= {};
      let inputs: Array<Float32Array | Uint16Array> | undefined;
      for (const mode of o.modes) {
        if (mode === 'auto' && !chosen.has(name)) chosen.set(name, await chooseAuto(name, spec, o.intraOpThreads ?? 2));
        const numerics = mode === 'auto' ? chosen.get(name)! : mode;
        const session = await ModelSession.open(spec.path, {
          executionProviders: ['cpu'],
          intraOpThreads: o.intraOpThreads ?? 2,
          output: spec.output,
          maxBatch: 1,
          graphOptimization: spec.graphOptimization,
          numerics,
        });
        try {
          if (!inputs) {
            const shape = { height: session.io.height, width: session.io.width, dtype: session.io.inputDtype };
            const key = JSON.stringify([spec.preprocess, shape]);
            if (!tensors.has(key)) {
              const list: Array<Float32Array | Uint16Array> = [];
              for (const b of bytes) list.push(await preprocessImage(b, spec.preprocess, shape, { maxPixels: 1e8 }));
              const hashes = list.map((x) =>
                createHash('sha256')
                  .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
                  .digest('hex')
                  .slice(0, 16),
              );
              tensors.set(key, { inputs: list, hashes });
            }
            ({ inputs } = tensors.get(key)!);
            report.inputs[name] = tensors.get(key)!.hashes;
          }
          const answers: number[] = [];
          const confidences: number[] = [];
          const t0 = performance.now();
          const cpu0 = process.cpuUsage();
          for (const x of inputs) {
            const { probs } = await session.run(x, 1);
            const best = topK(probs, 1)[0]!;
            answers.push(best);
            confidences.push(probs[best]!);
          }
          const cpu = process.cpuUsage(cpu0);
          const msPerImage = (performance.now() - t0) / inputs.length;
          const cpuMs = (cpu.user + cpu.system) / 1000 / inputs.length;
          const correct = answers.filter((a, i) => a === truth.get(report.photos[i]!)).length;
          const top1 = (100 * correct) / answers.length;
          const cpuMsPerImage = [...(report.models[name]![mode]?.cpuMsPerImage ?? []), cpuMs];
          report.models[name]![mode] = { top1, correct, answers, confidences, msPerImage, cpuMsPerImage, ...(mode === 'auto' ? { chosen: numerics } : {}) };
          log(
            `${name.padEnd(12)} ${(mode === 'auto' ? `auto→${numerics}` : mode).padEnd(11)} top-1 ${top1.toFixed(2).padStart(6)}% (${correct}/${answers.length}), ${msPerImage.toFixed(1)} ms/img, CPU ${cpuMs.toFixed(1)} ms/img${o.rounds && o.rounds > 1 ? ` (round ${round + 1})` : ''}`,
          );
        } finally {
          await session.close();
        }
      }
    }
  }
  return report;
}

/** What a worker under numerics 'auto' chooses for `spec` on this CPU (ModelCache: exact reference at planning, native probe against it). */
async function chooseAuto(name: string, spec: ModelSpecSchema, intraOpThreads: number): Promise<SessionNumerics> {
  const models = new ModelCache({
    runtime: { executionProviders: ['cpu'], threads: 1, intraOpThreads },
    capacity: 2,
    // No remote rows: a benchmark model is a local file, and an s3:// ref fails at once.
    read: (ref) => fetchRef(ref, new Stores({}, { schemes: [] })),
  });
  try {
    const { pin } = await planModel(name, spec, 'auto', models);
    const lease = await models.acquire(name, pin, 'auto', 0.002, 'bench-numerics');
    lease.release();
    return lease.numerics;
  } finally {
    await models.close();
  }
}

/** Median CPU ms per photo of each model and mode over the rounds, and the share of native's saving over exact that auto keeps. */
export function cpuTable(report: NumericsReport): string[] {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const lines = ['| model | exact CPU ms/img | native | auto (chose) | native saves | auto keeps of that |', '| --- | --- | --- | --- | --- | --- |'];
  for (const [name, r] of Object.entries(report.models)) {
    const [e, n, a] = [r.exact, r.native, r.auto].map((m) => (m ? median(m.cpuMsPerImage) : Number.NaN)) as [number, number, number];
    const saving = e - n;
    const kept = (e - a) / saving;
    lines.push(
      `| ${name} | ${e.toFixed(2)} | ${n.toFixed(2)} | ${a.toFixed(2)} (${r.auto?.chosen ?? '—'}) | ${((100 * saving) / e).toFixed(1)}% | ${Number.isFinite(kept) ? `${(100 * kept).toFixed(0)}%` : '—'} |`,
    );
  }
  return lines;
}

/** Lines comparing a report with a reference one (usually native, exact mode): differing answers per model and mode. */
export function compareReports(run: NumericsReport, ref: NumericsReport): string[] {
  const lines: string[] = [];
  const n = run.photos.length;
  if (ref.photos.slice(0, n).join('\n') !== run.photos.join('\n')) throw new Error('the reference ran on other photos');
  for (const [name, modes] of Object.entries(run.models)) {
    const refAnswers = ref.models[name]?.exact?.answers.slice(0, n);
    if (!refAnswers) continue;
    const inputsDiffer = countDiffStrings(run.inputs[name] ?? [], (ref.inputs[name] ?? []).slice(0, n));
    const refConfidences = ref.models[name]?.exact?.confidences?.slice(0, n);
    for (const [mode, r] of Object.entries(modes)) {
      const same = r.answers.map((a, i) => a === refAnswers[i]);
      const gap = refConfidences && r.confidences ? Math.max(0, ...r.confidences.map((c, i) => (same[i] ? Math.abs(c - refConfidences[i]!) : 0))) : null;
      lines.push(
        `${name.padEnd(12)} ${mode.padEnd(6)} ${countDifferences(r.answers, refAnswers)}/${n} answers differ from ${ref.cpu.label} exact` +
          (gap === null ? '' : `, top-1 probability at most ${gap.toPrecision(2)} apart where they agree`) +
          (inputsDiffer ? ` (${inputsDiffer} input tensors differ too)` : ''),
      );
    }
  }
  return lines;
}

function countDiffStrings(a: readonly string[], b: readonly string[]): number {
  return a.reduce((n, x, i) => n + (x === b[i] ? 0 : 1), 0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      photos: { type: 'string' },
      models: { type: 'string', default: ALL_MODELS.join(',') },
      modes: { type: 'string', default: 'exact,native' },
      threads: { type: 'string', default: '2' },
      json: { type: 'string' },
      compare: { type: 'string' },
      'cpu-label': { type: 'string' },
      rounds: { type: 'string', default: '1' },
    },
  });
  const assets = findAssets();
  if ('missing' in assets) {
    console.log(`numerics benchmark skipped: ${assets.missing}`);
    return;
  }
  const modes = values.modes.split(',').map((m) => {
    if (m !== 'exact' && m !== 'native' && m !== 'auto') throw new Error(`--modes: '${m}' is none of exact, native, auto`);
    return m as Numerics;
  });
  const label = values['cpu-label'] ?? 'native';
  console.log(
    `cpu: ${label}; /proc/cpuinfo flags: ${cpuFlags().join(' ') || '(none of avx2, avx512_vnni, avx_vnni)'}${values['cpu-label'] ? " (the host's, under emulation)" : ''}`,
  );
  const report = await measureNumerics({
    assetsDir: assets.dir,
    photos: values.photos ? Number(values.photos) : Number.POSITIVE_INFINITY,
    models: values.models.split(','),
    modes,
    intraOpThreads: Number(values.threads),
    rounds: Number(values.rounds),
    cpuLabel: label,
    log: (line) => console.log(line),
  });
  for (const [name, r] of Object.entries(report.models)) {
    if (r.exact && r.native)
      console.log(`${name.padEnd(12)} exact vs native here: ${countDifferences(r.exact.answers, r.native.answers)}/${report.photos.length} answers differ`);
  }
  if (report.photos.length && Object.values(report.models).some((r) => r.exact && r.native && r.auto)) {
    console.log(`\nCPU per photo, median of ${values.rounds} interleaved round(s), ${report.photos.length} photos, batch 1, ${values.threads} ORT thread(s):`);
    for (const line of cpuTable(report)) console.log(line);
    for (const [name, r] of Object.entries(report.models))
      if (r.exact && r.auto)
        console.log(`${name.padEnd(12)} auto vs exact here: ${countDifferences(r.exact.answers, r.auto.answers)}/${report.photos.length} answers differ`);
  }
  if (values.json) await writeFile(values.json, `${JSON.stringify(report)}\n`);
  if (values.compare) {
    const ref = JSON.parse(await readFile(values.compare, 'utf8')) as NumericsReport;
    for (const line of compareReports(report, ref)) console.log(line);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
