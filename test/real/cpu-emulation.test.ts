/**
 * int8 numerics across x86 CPUs (docs/models.md, "Numerics").
 *
 * onnxruntime's default u8s8 int8 kernels saturate on CPUs without VNNI, so the int8 models
 * answered differently per CPU. With numerics 'exact' (the default) ORT uses U8U8 kernels there,
 * and every CPU must give the same top-1 per photo. This runs MobileNetV2-int8 and ShuffleNet-QDQ
 * on the first photos natively and under qemu-user as a Haswell (AVX2, no VNNI) and a Nehalem
 * (SSE4.2) and compares the answers photo by photo. Then numerics 'auto' end to end: `cascade run`
 * on a few photos labels with native kernels on this host and falls back to exact ones on the
 * emulated Haswell, with the same labels. Skipped, with a message, without
 * `qemu-x86_64` on PATH, off x86-64, or without the assets. (The option itself on generated
 * models: unit/numerics-option.test.ts.)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listPhotos } from '../../bench/assets.js';
import { countDifferences, measureNumerics, type NumericsReport } from '../../bench/numerics.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const ASSETS = resolve(process.env.CASCADE_ASSETS ?? join(REPO, '..', 'shared', 'assets'));
const QEMU = (process.env.PATH ?? '')
  .split(delimiter)
  .filter(Boolean)
  .map((dir) => join(dir, 'qemu-x86_64'))
  .find((p) => existsSync(p));
const assetsPresent = existsSync(join(ASSETS, 'images')) && existsSync(join(ASSETS, 'models'));
const skipReason =
  process.arch !== 'x64'
    ? `not an x86-64 machine (${process.arch})`
    : !QEMU
      ? 'qemu-x86_64 is not on PATH (apt-get install qemu-user)'
      : !assetsPresent
        ? `no assets at ${ASSETS} (set CASCADE_ASSETS to the folder holding images/, labels/ and models/)`
        : null;
if (skipReason) console.warn(`cpu-emulation suite skipped: ${skipReason}`);

/** Photos compared: under emulation one model takes ~0.4–1 s a photo. */
const PHOTOS = 40;
const MODELS = ['mobilenetv2', 'shufflenet'];
/** qemu CPU models without VNNI: AVX2 (ORT's AVX2 int8 kernels) and SSE4.2 (its SSE kernels). */
const CPUS = ['Haswell', 'Nehalem'];

describe.skipIf(skipReason !== null)(`int8 models under CPU emulation (first ${PHOTOS} photos)`, () => {
  let tmp = '';
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it(`${MODELS.join(' and ')} in 'exact' mode: the same top-1 per photo natively and on ${CPUS.join(' and ')}`, { timeout: 600_000 }, async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cascade-emulation-'));
    const t0 = performance.now();
    // The emulated runs go first (they are the slow part), both at once, one ORT thread each.
    const emulated = Promise.all(CPUS.map((cpu) => runEmulated(cpu, join(tmp, `${cpu}.json`))));
    const native = await measureNumerics({ assetsDir: ASSETS, photos: PHOTOS, models: MODELS, modes: ['exact'], intraOpThreads: 1 });
    const reports = await emulated;
    console.log(`cpu emulation: ${PHOTOS} photos × ${MODELS.length} models on ${CPUS.join(', ')} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);

    expect(native.photos).toHaveLength(PHOTOS);
    for (const [i, cpu] of CPUS.entries()) {
      const report = reports[i]!;
      expect(report.photos).toEqual(native.photos);
      for (const model of MODELS) {
        const ours = native.models[model]!.exact!;
        const theirs = report.models[model]!.exact!;
        const inputsDiffer = report.inputs[model]!.filter((h, k) => h !== native.inputs[model]![k]).length;
        const differing = countDifferences(theirs.answers, ours.answers);
        console.log(
          `${model} on ${cpu}: ${differing}/${PHOTOS} top-1 answers differ from native (top-1 ${theirs.top1.toFixed(1)}% vs ${ours.top1.toFixed(1)}%), ${inputsDiffer} input tensors differ`,
        );
        expect(theirs.answers, `${model} on ${cpu}${inputsDiffer ? ` (${inputsDiffer} input tensors differ too: preprocessing)` : ''}`).toEqual(ours.answers);
      }
    }
  });
});

/** Photos of the end-to-end 'auto' runs: under emulation the fixed cost (two opens and probes per model) dominates. */
const AUTO_PHOTOS = 3;

describe.skipIf(skipReason !== null)(`numerics 'auto' end to end (cascade run, first ${AUTO_PHOTOS} photos)`, () => {
  let tmp = '';
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('runs native kernels on this host (VNNI), falls back to exact ones on an emulated Haswell, and labels alike', { timeout: 600_000 }, async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cascade-emulation-auto-'));
    const photos = join(tmp, 'photos');
    await mkdir(photos);
    for (const p of await listPhotos(ASSETS, AUTO_PHOTOS)) await copyFile(p, join(photos, basename(p)));
    // Threshold 1 forwards every photo, so both int8 models label (and choose) on every CPU.
    const run = (name: string, numerics: string, cpu?: string) =>
      runCascade(
        [
          'run',
          photos,
          '--out',
          join(tmp, name),
          '--little',
          join(REPO, 'config/models/shufflenet.yaml'),
          '--big',
          join(REPO, 'config/models/mobilenetv2.yaml'),
          '--threshold',
          '1',
          '--numerics',
          numerics,
          '--no-progress',
        ],
        // Each process its own probe cache: under qemu-user /proc/cpuinfo shows the host's flags, so a
        // shared cache would hand the emulated CPU the host's native probes.
        join(tmp, `cache-${name}`),
        cpu,
      );
    const emulated = run('haswell-auto', 'auto', 'Haswell');
    const hostAuto = await run('host-auto', 'auto');
    const hostExact = await run('host-exact', 'exact');
    const haswell = await emulated;

    const used = (r: RunResult) => r.summary.stages.map((s) => [s.provenance?.numerics, s.provenance?.numericsUsed]);
    console.log(`numerics auto: host ${JSON.stringify(used(hostAuto))}, Haswell ${JSON.stringify(used(haswell))}`);
    expect(used(hostExact)).toEqual([
      ['exact', ['exact']],
      ['exact', ['exact']],
    ]);
    if (hostFlags().includes('avx512_vnni') || hostFlags().includes('avx_vnni'))
      expect(used(hostAuto)).toEqual([
        ['auto', ['native']],
        ['auto', ['native']],
      ]);
    expect(used(haswell)).toEqual([
      ['auto', ['exact']],
      ['auto', ['exact']],
    ]);
    const labels = (r: RunResult) => r.rows.map((row) => [row.key.split('/').pop(), row.stage, row.label]);
    expect(labels(hostAuto)).toEqual(labels(hostExact));
    expect(labels(haswell)).toEqual(labels(hostExact));
    // Exact kernels give the host's probabilities on the Haswell too, to float rounding.
    haswell.rows.forEach((row, i) => expect(row.confidence!).toBeCloseTo(hostExact.rows[i]!.confidence!, 5));
  });
});

interface RunResult {
  summary: RunSummary;
  rows: ManifestRow[];
}

/** The built `cascade` CLI (natively, or under `qemu-x86_64 -cpu <cpu>`) with its own cache; resolves with the run's summary and rows. */
async function runCascade(args: string[], cacheDir: string, cpu?: string): Promise<RunResult> {
  const cli = [process.execPath, join(REPO, 'bin', 'cascade.js'), ...args];
  const [cmd, ...rest] = cpu ? [QEMU!, '-cpu', cpu, ...cli] : cli;
  const out = args[args.indexOf('--out') + 1]!;
  const output = await runChild(
    cmd!,
    rest,
    { ...process.env, CASCADE_ASSETS: ASSETS, CASCADE_CACHE: cacheDir },
    `cascade ${args[0]}${cpu ? ` under qemu -cpu ${cpu}` : ''}`,
  );
  const summary = RunSummary.parse(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')));
  const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
  if (rows.length !== AUTO_PHOTOS) throw new Error(`expected ${AUTO_PHOTOS} rows:\n${output.slice(-3000)}`);
  return { summary, rows };
}

/** The host's vector flags (the emulated CPU never shows its own under qemu-user). */
function hostFlags(): string {
  return existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
}

/** bench/numerics.ts under `qemu-x86_64 -cpu <cpu>`, 'exact' mode; resolves with its JSON report. */
async function runEmulated(cpu: string, jsonPath: string): Promise<NumericsReport> {
  const args = [
    '-cpu',
    cpu,
    process.execPath,
    '--import',
    'tsx',
    join(REPO, 'bench', 'numerics.ts'),
    '--photos',
    String(PHOTOS),
    '--models',
    MODELS.join(','),
    '--modes',
    'exact',
    '--threads',
    '1',
    '--cpu-label',
    cpu,
    '--json',
    jsonPath,
  ];
  await runChild(QEMU!, args, { ...process.env, CASCADE_ASSETS: ASSETS }, `bench/numerics.ts under qemu -cpu ${cpu}`);
  return JSON.parse(await readFile(jsonPath, 'utf8')) as NumericsReport;
}

/** Run a child process in the repository; resolves with its output, rejects with its tail when it fails. */
async function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<string> {
  const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  // qemu warns about every CPUID feature TCG lacks; keep the rest.
  child.stderr.on(
    'data',
    (d: Buffer) =>
      (output += d
        .toString()
        .split('\n')
        .filter((l) => !l.includes("TCG doesn't support requested feature"))
        .join('\n')),
  );
  const code = await new Promise<number | null>((done, fail) => child.on('error', fail).on('exit', done));
  if (code !== 0) throw new Error(`${what} exited with ${code}:\n${output.slice(-3000)}`);
  return output;
}
