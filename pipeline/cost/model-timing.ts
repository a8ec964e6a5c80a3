/**
 * What one model costs per image on this machine, measured rather than counted: CPU seconds to
 * fetch, decode and preprocess an image for it, and CPU seconds (GPU seconds on a GPU provider)
 * to run it at a given batch size. MACs rank models but do not price them: decoding, memory
 * traffic and kernel quality make a model's machine time far from proportional to its MACs.
 *
 * The probe runs alone in its process, so `process.cpuUsage()` (every thread of the process,
 * inference threads included) is attributable to it. Results are cached per model file, numerics,
 * provider and CPU, next to the probability cache.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { CascadeError } from '../../config/errors.js';
import { defaultCacheDir } from '../calibration/prob-cache.js';
import { modelInput } from '../classify-batch.js';
import { decodeOne, type Ready } from '../image/decode-stream.js';
import { preprocessKey } from '../image/tensor-cache.js';
import { inferChunk } from '../inference/infer-chunks.js';
import { currentPlatform, type Platform } from '../inference/platform.js';
import type { StageModel } from '../models/loaded-model.js';

/** Measured per-image cost of one model on this machine, in core-seconds (cpu) or GPU-seconds (gpu). */
export interface ModelTiming {
  /** The model file's sha256 (the key, with numerics, provider, cpu). */
  sha256: string;
  /** What ran: 'exact' | 'native' | … */
  numerics: string;
  /** Execution provider, e.g. 'cpu'. */
  provider: string;
  workerClass: 'cpu' | 'gpu';
  /** e.g. 'x86_64 [avx2 avx512_vnni]'. */
  cpu: string;
  /** Per image: fetch+decode+preprocess CPU seconds for this model's input. */
  decodeSeconds: number;
  /** Per image: inference CPU seconds (GPU seconds for gpu) at the probe's batch size. */
  inferSeconds: number;
  /** Images timed. */
  images: number;
  batchSize: number;
  /** ISO time of the measurement. */
  measuredAt: string;
  source: 'probe' | 'runs';
}

/** A cached timing file, checked on read: a damaged or foreign entry is probed again. */
export const ModelTimingRow = z.object({
  sha256: z.string().min(1),
  numerics: z.string().min(1),
  provider: z.string().min(1),
  workerClass: z.enum(['cpu', 'gpu']),
  cpu: z.string().min(1),
  decodeSeconds: z.number().nonnegative(),
  inferSeconds: z.number().nonnegative(),
  images: z.number().int().positive(),
  batchSize: z.number().int().positive(),
  measuredAt: z.string().min(1),
  source: z.enum(['probe', 'runs']),
}) satisfies z.ZodType<ModelTiming>;

/** What identifies a timing: the same model, numerics and provider on the same CPU cost the same. */
export type TimingKey = Pick<ModelTiming, 'sha256' | 'numerics' | 'provider' | 'cpu'>;

/** A probe that failed or ran past its time limit (exit 2: the models or images given cannot be timed). */
export class TimingProbeError extends CascadeError {
  override name = 'TimingProbeError';
}

export interface ProbeDeps {
  /** Read an image's bytes (local path or s3:// URL). */
  fetch: (ref: string) => Promise<Buffer>;
  maxPixels: number;
  /** The model file's sha256. */
  sha256: string;
  numerics: string;
  /** Default: 'gpu' for any provider but the CPU's. */
  workerClass?: 'cpu' | 'gpu';
  /** Default: this process's platform. */
  platform?: Platform;
}

export interface ProbeOptions {
  /** Images per inference call. */
  batchSize: number;
  /** The whole probe (decode and inference) must finish within this. */
  timeoutMs: number;
}

/** The CPU part of a timing key: architecture and the kernel-selecting flags, e.g. 'x86_64 [avx2 avx512_vnni]'. */
export function cpuDescription(p: Platform = currentPlatform()): string {
  return `${p.arch} [${p.cpuFlags.join(' ')}]`;
}

/** CPU seconds (user + system) this process spent since `since`. */
function cpuSecondsSince(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/**
 * Time `model` on `refs`: a serial decode of every image (one at a time, so no decode overlaps
 * another or inference), then inference in calls of `batchSize`. One warm-up decode and one
 * warm-up call come first and are not counted (first-call allocation and kernel selection are
 * not a per-image cost). Images that cannot be read are left out; none readable is an error.
 */
export async function probeModelTiming(model: StageModel, refs: readonly string[], deps: ProbeDeps, opts: ProbeOptions): Promise<ModelTiming> {
  if (refs.length === 0) throw new TimingProbeError(`cannot time ${model.name}: no images to time it on`);
  if (!(opts.batchSize >= 1)) throw new TimingProbeError(`cannot time ${model.name}: batch size must be at least 1, got ${opts.batchSize}`);
  const expired = new TimingProbeError(`timing ${model.name} took longer than ${opts.timeoutMs / 1000} s; give fewer probe images`);
  // An inference call cannot be stopped, and its pool must not be closed under it (onnxruntime
  // aborts the process): past the limit the probe gives up at once while it waits for an image,
  // and at the end of the call when one is running.
  const clock: ProbeClock = { expired: false, inCall: false, giveUp: () => {} };
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    clock.giveUp = () => reject(expired);
    timer = setTimeout(() => {
      clock.expired = true;
      if (!clock.inCall) clock.giveUp();
    }, opts.timeoutMs);
  });
  try {
    return await Promise.race([measure(model, refs, deps, opts.batchSize, clock), limit]);
  } catch (err) {
    if (err instanceof TimingProbeError) throw err;
    if (clock.expired) throw expired;
    throw new TimingProbeError(`cannot time ${model.name}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** A probe's time limit: whether it has passed, and whether an inference call is running. */
interface ProbeClock {
  expired: boolean;
  inCall: boolean;
  giveUp: () => void;
}

async function measure(model: StageModel, refs: readonly string[], deps: ProbeDeps, batchSize: number, clock: ProbeClock): Promise<ModelTiming> {
  const shape = modelInput(model.pool);
  const how = preprocessKey(model.preprocess, shape);
  const decodeDeps = { fetch: deps.fetch, maxPixels: deps.maxPixels, fetchConcurrency: 1 };
  const decode = (ref: string, pos: number) => decodeOne({ ref, pos }, model.preprocess, shape, how, decodeDeps);

  await decode(refs[0]!, 0); // warm-up: sharp's first decode loads its codecs
  const ready: Ready[] = [];
  let firstError: unknown;
  const decodeStart = process.cpuUsage();
  for (const [pos, ref] of refs.entries()) {
    if (clock.expired) return new Promise<never>(() => {}); // the limit has already rejected
    const d = await decode(ref, pos);
    if (d.ok) ready.push(d);
    else firstError ??= d.err;
  }
  const decodeCpu = cpuSecondsSince(decodeStart);
  if (ready.length === 0) throw new Error(`none of the ${refs.length} images could be read (${(firstError as Error)?.message ?? firstError})`);

  const call = async (chunk: readonly Ready[]) => {
    if (clock.expired) throw new Error('expired');
    clock.inCall = true;
    const outcome = await inferChunk(model.pool, chunk);
    clock.inCall = false;
    if (clock.expired) clock.giveUp();
    if (!outcome.ok) throw outcome.err;
  };
  await call(ready.slice(0, batchSize)); // warm-up call
  const inferStart = process.cpuUsage();
  const wallStart = performance.now();
  for (let i = 0; i < ready.length; i += batchSize) await call(ready.slice(i, i + batchSize));
  const inferCpu = cpuSecondsSince(inferStart);
  const inferWall = (performance.now() - wallStart) / 1000;

  const provider = model.pool.provider;
  const workerClass = deps.workerClass ?? (provider === 'cpu' ? 'cpu' : 'gpu');
  return {
    sha256: deps.sha256,
    numerics: deps.numerics,
    provider,
    workerClass,
    cpu: cpuDescription(deps.platform),
    decodeSeconds: decodeCpu / ready.length,
    // On a GPU the device's busy time is what is paid for; its calls are serial, so their wall time is it.
    inferSeconds: (workerClass === 'gpu' ? inferWall : inferCpu) / ready.length,
    images: ready.length,
    batchSize,
    measuredAt: new Date().toISOString(),
    source: 'probe',
  };
}

/** The default timing cache: `timings/` beside the probability cache ($XDG_CACHE_HOME/cascade/timings). */
export function defaultTimingCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dirname(defaultCacheDir(env)), 'timings');
}

function cacheFile(dir: string, key: TimingKey): string {
  const id = createHash('sha256')
    .update(JSON.stringify([key.sha256, key.numerics, key.provider, key.cpu]))
    .digest('hex')
    .slice(0, 32);
  return join(dir, `${id}.json`);
}

/** The cached timing for `key`, or null when none (or only a damaged or mismatching entry) is cached. */
export async function readTimingCache(dir: string, key: TimingKey): Promise<ModelTiming | null> {
  try {
    const row = ModelTimingRow.parse(JSON.parse(await readFile(cacheFile(dir, key), 'utf8')));
    const same = row.sha256 === key.sha256 && row.numerics === key.numerics && row.provider === key.provider && row.cpu === key.cpu;
    return same ? row : null;
  } catch {
    return null; // absent or damaged: measure again rather than trust it
  }
}

/** Store a timing under its own key (atomic: a reader sees the old file or the new one). */
export async function writeTimingCache(dir: string, timing: ModelTiming): Promise<void> {
  await mkdir(dir, { recursive: true });
  const path = cacheFile(dir, timing);
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, `${JSON.stringify(ModelTimingRow.parse(timing), null, 2)}\n`);
  await rename(tmp, path);
}

/**
 * The model's timing: the cached one for this model, numerics, provider and CPU if there is one,
 * else a probe, stored for next time. `cacheDir` null measures every time and stores nothing.
 */
export async function modelTiming(
  model: StageModel,
  refs: readonly string[],
  deps: ProbeDeps,
  opts: ProbeOptions & { cacheDir: string | null },
): Promise<ModelTiming> {
  const key = { sha256: deps.sha256, numerics: deps.numerics, provider: model.pool.provider, cpu: cpuDescription(deps.platform) };
  const cached = opts.cacheDir === null ? null : await readTimingCache(opts.cacheDir, key);
  if (cached) return cached;
  const timing = await probeModelTiming(model, refs, deps, opts);
  if (opts.cacheDir !== null) await writeTimingCache(opts.cacheDir, timing);
  return timing;
}
