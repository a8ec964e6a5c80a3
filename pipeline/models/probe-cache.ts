/**
 * Conformance probes kept on disk, so a second run with the same models on the same machine
 * neither opens a model to plan it nor runs a probe again (the probe is most of a run's fixed
 * cost: docs/performance.md). An entry is keyed by everything that decides the probe's numbers:
 * the model's bytes, output mode and graph optimisation, the preprocessing, the session's
 * numerics, the execution provider, the CPU architecture and kernel flags, the onnxruntime and
 * libvips versions, and the probe images themselves.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { z } from 'zod';
import { cacheRoot } from '../../config/cache-dir.js';
import { makeDir } from '../storage/make-dir.js';
import type { PreprocessSpec, SessionNumerics } from '../../config/schema.js';
import type { Platform } from '../inference/platform.js';
import type { ModelPin } from './model-pin.js';
import { Probe, probePixels } from './probe.js';

/** What a probe's numbers depend on, besides the probe images and the libvips version. */
export interface ProbeIdentity {
  sha256: string;
  output: ModelPin['output'];
  graphOptimization: ModelPin['graphOptimization'];
  preprocess: PreprocessSpec;
  numerics: SessionNumerics;
  provider: string;
  platform: Platform;
}

/** One cache file: the identity it was computed for (for people reading the cache) and the probe. */
const ProbeCacheEntry = z.object({ version: z.literal(1), identity: z.unknown(), probe: Probe });

/** The default directory: probes/ under cacheRoot() ($CASCADE_CACHE, else $XDG_CACHE_HOME/cascade, else ~/.cache/cascade). */
export function defaultProbeCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), 'probes');
}

/** Reads and writes probes in one directory, one JSON file per identity; never fails a run. */
export class ProbeCache {
  private imagesDigest: string | undefined;

  constructor(readonly dir: string) {}

  /** The cached probe for `id`, or null when none (or only an unreadable entry) is cached. */
  async get(id: ProbeIdentity): Promise<Probe | null> {
    try {
      const entry = ProbeCacheEntry.parse(JSON.parse(await readFile(this.fileOf(id), 'utf8')));
      return entry.probe;
    } catch {
      return null; // absent or damaged: the probe runs again
    }
  }

  /** Store `probe` for `id` (atomically); resolves with the error instead of throwing when the directory is not writable. */
  async put(id: ProbeIdentity, probe: Probe): Promise<Error | null> {
    const file = this.fileOf(id);
    try {
      await makeDir(this.dir);
      // Unique per write: two caches of one process may store the same probe at once.
      const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, `${JSON.stringify({ version: 1, identity: id, probe })}\n`);
      await rename(tmp, file);
      return null;
    } catch (err) {
      return err as Error;
    }
  }

  /** The entry's file: the sha256 of the identity, the libvips version and the probe images. */
  fileOf(id: ProbeIdentity): string {
    // The probe images are pure arithmetic: hashing them notices any change to probe.ts's images.
    this.imagesDigest ??= probePixels()
      .reduce((h, p) => h.update(p.name).update(p.rgb), createHash('sha256'))
      .digest('hex');
    // Field by field, so the key does not depend on the order a caller built `id` in.
    const { sha256, output, graphOptimization, preprocess, numerics, provider, platform } = id;
    const fields = [sha256, output, graphOptimization, preprocess, numerics, provider, platform.arch, platform.cpuFlags, platform.onnxruntime];
    const key = createHash('sha256')
      .update(JSON.stringify([...fields, sharp.versions.vips, this.imagesDigest]))
      .digest('hex');
    return join(this.dir, `${key.slice(0, 32)}.json`);
  }
}
