/**
 * int8 numerics across x86 CPUs (docs/models.md, "Numerics").
 *
 * onnxruntime's default u8s8 int8 kernels saturate on CPUs without VNNI, so the int8 models
 * answered differently per CPU. With numerics 'exact' (the default) ORT uses U8U8 kernels there,
 * and every CPU must give the same top-1 per photo. This runs MobileNetV2-int8 and ShuffleNet-QDQ
 * on the first photos natively and under qemu-user as a Haswell (AVX2, no VNNI) and a Nehalem
 * (SSE4.2) and compares the answers photo by photo. Skipped, with a message, without
 * `qemu-x86_64` on PATH, off x86-64, or without the assets. (The option itself on generated
 * models: unit/numerics-option.test.ts.)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countDifferences, measureNumerics, type NumericsReport } from '../../bench/numerics.js';

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
  const child = spawn(QEMU!, args, { cwd: REPO, env: { ...process.env, CASCADE_ASSETS: ASSETS }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  if (code !== 0) throw new Error(`bench/numerics.ts under qemu -cpu ${cpu} exited with ${code}:\n${output.slice(-3000)}`);
  return JSON.parse(await readFile(jsonPath, 'utf8')) as NumericsReport;
}
