/**
 * On-disk cache of a model's probability rows per image, so threshold sweeps and saver
 * searches never run a model twice on the same image. One entry per model fingerprint
 * (model bytes + preprocessing + output mode + graph optimisation): `<fp>.json` lists the
 * image keys, classes and decode errors; `<fp>.f32` holds the rows in key order.
 */
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { makeDir } from '../storage/make-dir.js';
import { join } from 'node:path';
import { z } from 'zod';
import { cacheRoot } from '../../config/cache-dir.js';
import type { ModelSpec, SessionNumerics } from '../../config/schema.js';
import { currentPlatform } from '../inference/platform.js';

/** A model's answers on a set of images: probability rows, and images that could not be scored. */
export interface ScoredImages {
  classes: number;
  probs: Map<string, Float32Array>;
  errors: Map<string, string>;
}

const CacheIndex = z.object({
  version: z.literal(1),
  model: z.string(),
  classes: z.number().int().positive(),
  keys: z.array(z.string()),
  errors: z.array(z.object({ key: z.string(), message: z.string() })),
});

/** The default cache directory: probabilities/ under cacheRoot() ($CASCADE_CACHE, else $XDG_CACHE_HOME/cascade, else ~/.cache/cascade). */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), 'probabilities');
}

/** Identify everything that changes a model's probabilities: its bytes and how images are fed to it. */
export async function modelFingerprint(
  spec: Pick<ModelSpec, 'path' | 'preprocess' | 'output' | 'graphOptimization'>,
  numerics: SessionNumerics,
): Promise<string> {
  const bytes = await readFile(spec.path);
  // Native int8 numerics differ between CPUs: their rows are only reused on the same CPU flags.
  const { onnxruntime, cpuFlags } = currentPlatform();
  const platform = numerics === 'native' ? { onnxruntime, cpuFlags } : { onnxruntime };
  return createHash('sha256')
    .update(createHash('sha256').update(bytes).digest())
    .update(JSON.stringify({ preprocess: spec.preprocess, output: spec.output, graphOptimization: spec.graphOptimization, numerics, platform }))
    .digest('hex')
    .slice(0, 32);
}

/** Reads and writes cached probabilities in one directory. */
export class ProbabilityCache {
  constructor(readonly dir: string) {}

  /** The cached answers of a model, or null when none (or only a damaged entry) is cached. */
  async read(fingerprint: string): Promise<ScoredImages | null> {
    let index: z.infer<typeof CacheIndex>;
    let data: Buffer;
    try {
      index = CacheIndex.parse(JSON.parse(await readFile(join(this.dir, `${fingerprint}.json`), 'utf8')));
      data = await readFile(join(this.dir, `${fingerprint}.f32`));
    } catch {
      return null; // absent or damaged: recompute rather than trust it
    }
    if (data.byteLength !== index.keys.length * index.classes * 4) return null;
    // Copy into an aligned buffer: a Buffer from readFile may sit at an odd offset of a pool.
    const all = new Float32Array(index.keys.length * index.classes);
    new Uint8Array(all.buffer).set(data);
    const probs = new Map<string, Float32Array>();
    index.keys.forEach((key, i) => probs.set(key, all.subarray(i * index.classes, (i + 1) * index.classes)));
    return { classes: index.classes, probs, errors: new Map(index.errors.map((e) => [e.key, e.message])) };
  }

  /** Store a model's answers (all of them: merge with what was read first). Atomic per file. */
  async write(fingerprint: string, model: string, scored: ScoredImages): Promise<void> {
    await makeDir(this.dir);
    const keys = [...scored.probs.keys()];
    const all = new Float32Array(keys.length * scored.classes);
    keys.forEach((key, i) => all.set(scored.probs.get(key)!, i * scored.classes));
    const index = { version: 1, model, classes: scored.classes, keys, errors: [...scored.errors].map(([key, message]) => ({ key, message })) };
    // Rows first, index last: a reader that sees the new index also sees its rows.
    await atomicWrite(join(this.dir, `${fingerprint}.f32`), new Uint8Array(all.buffer));
    await atomicWrite(join(this.dir, `${fingerprint}.json`), JSON.stringify(index));
  }
}

async function atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
