/**
 * The models a process has open, shared by its stages and by run planning, bounded in number.
 * A model is opened from the path or s3:// URL a run pins, only after its bytes hash to the
 * pinned sha256, and used for a run only after its conformance probe matches the run's
 * reference on this machine. One fleet can so serve runs with different models at once, and
 * a worker can never label with a model other than the one its run names.
 */
import { rename, stat, writeFile } from 'node:fs/promises';
import { makeDir } from '../storage/make-dir.js';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { ExecutionProvider, Numerics } from '../../config/schema.js';
import { InferencePool } from '../inference/inference-pool.js';
import { ModelLoadError } from '../inference/model-session.js';
import { currentPlatform, describePlatform, type Platform } from '../inference/platform.js';
import { isS3Url } from '../storage/location.js';
import { parseLabels } from './labels.js';
import { type ModelPin, sha256Hex, shortHash } from './model-pin.js';
import { compareProbe, runProbe, type Probe, type ProbeComparison } from './probe.js';
import type { LoadedModel } from './loaded-model.js';

/** A model a worker will not use for a run: wrong bytes, or outputs that differ from the run's reference. */
export class ModelRefusedError extends ModelLoadError {
  override name = 'ModelRefusedError';
}

/** Per-process inference settings: how fast, never what answer. */
export interface RuntimeOptions {
  executionProviders: readonly ExecutionProvider[];
  /** Inference threads per model. */
  threads: number;
  intraOpThreads: number;
  /** See PoolOptions.accumulateMs. */
  accumulateMs?: number;
  /** Largest inference batch this process sends (lowers a pin's maxBatch, never raises it). */
  maxBatch?: number;
}

export interface ModelCacheOptions {
  runtime: RuntimeOptions;
  /** Models kept open at most; the least recently used idle one is closed first. */
  capacity: number;
  /** Reads a model or label file: a local path or an s3:// URL. */
  read: (ref: string) => Promise<Buffer>;
  /** Where models read from S3 are kept as files (onnxruntime opens files), by sha256; default: cascade-models in the OS temp dir. */
  downloadDir?: string;
  log?: (msg: string) => void;
}

/** What decides a model's session: the bytes and every option that changes its outputs. */
/** A pin without its probe: what opening the model needs. */
export type PinnedFile = Omit<ModelPin, 'probe'>;

type SessionKey = Pick<ModelPin, 'sha256' | 'output' | 'graphOptimization' | 'maxBatch' | 'labels'> & { numerics: Numerics };

interface Entry {
  model: Promise<LoadedModel>;
  users: number;
  /** This session's outputs on the probe images (fixed images: one run per session serves every run). */
  probe?: Promise<Probe>;
}

/** A model borrowed from the cache; release it when the batch is done. */
export interface ModelLease {
  model: LoadedModel;
  release(): void;
}

/** Bounded, reference-counted set of open models keyed by content and session options. */
export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  readonly platform: Platform = currentPlatform();

  constructor(private readonly o: ModelCacheOptions) {}

  /**
   * Borrow the model a run pins for stage `stage`, verified: its file must hash to the pin and its
   * probe must match the pin's reference within `tolerance`. Throws ModelRefusedError otherwise.
   */
  async acquire(stage: string, pin: ModelPin, numerics: Numerics, tolerance: number, runId: string): Promise<ModelLease & { probe: ProbeComparison }> {
    const { entry, model, release } = await this.borrow(stage, pin, numerics);
    try {
      if (!entry.probe) {
        entry.probe = runProbe(model.pool, pin.preprocess, this.platform);
        entry.probe.catch(() => (entry.probe = undefined));
      }
      const probe = compareProbe(pin.probe, await entry.probe, tolerance);
      if (!probe.ok) {
        throw new ModelRefusedError(
          `stage ${stage} refuses model ${pin.name} (sha256 ${shortHash(pin.sha256)}) for run ${runId}: its probe outputs differ from the run's reference by up to ` +
            `${probe.maxDiff.toFixed(4)} (tolerance ${tolerance})${probe.top1Changed.length ? `, top-1 changed on ${probe.top1Changed.join(', ')}` : ''}; ` +
            `this worker: ${describePlatform(this.platform)}, provider ${model.pool.provider}, numerics ${numerics}; ` +
            `reference: ${describePlatform(pin.probe.platform)}, provider ${pin.probe.provider}`,
        );
      }
      return { model, release, probe };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Borrow a model by its pin without a probe check: for planning, which records the reference. */
  async acquireUnverified(stage: string, pin: PinnedFile, numerics: Numerics): Promise<ModelLease> {
    const { model, release } = await this.borrow(stage, pin, numerics);
    return { model, release };
  }

  private async borrow(stage: string, pin: PinnedFile, numerics: Numerics): Promise<ModelLease & { entry: Entry }> {
    const entry = this.entry(stage, pin, this.keyOf(pin, numerics));
    entry.users += 1;
    // Only now, with this entry in use, may others make room for it.
    void this.evict();
    const release = once(() => {
      entry.users -= 1;
      void this.evict();
    });
    try {
      // The session is shared by content; the stage name and preprocessing are this pin's own.
      const shared = await entry.model;
      return { entry, model: { ...shared, name: stage, preprocess: pin.preprocess }, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Read a model or label file (local path or s3:// URL) the way this cache does. */
  readFile(ref: string): Promise<Buffer> {
    return this.o.read(ref);
  }

  /** Close every model (waits for loads in flight). */
  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.map(async (e) => (await e.model).close()));
  }

  /** Open models now (for metrics and tests). */
  get size(): number {
    return this.entries.size;
  }

  private keyOf(pin: PinnedFile, numerics: Numerics): string {
    const maxBatch = Math.min(pin.maxBatch, this.o.runtime.maxBatch ?? pin.maxBatch);
    // Labels ride along with the session (loaded once per entry), so they are part of its key.
    const key: SessionKey = { sha256: pin.sha256, output: pin.output, graphOptimization: pin.graphOptimization, maxBatch, numerics, labels: pin.labels };
    return JSON.stringify(key);
  }

  private entry(stage: string, pin: PinnedFile, key: string): Entry {
    const entry = this.entries.get(key);
    if (entry) {
      // Most recently used last: eviction takes from the front.
      this.entries.delete(key);
      this.entries.set(key, entry);
      return entry;
    }
    const created: Entry = { model: this.load(stage, pin, JSON.parse(key) as SessionKey), users: 0 };
    // A failed load is not kept: the file may be fixed, or reachable, on the next job.
    created.model.catch(() => {
      if (this.entries.get(key) === created) this.entries.delete(key);
    });
    this.entries.set(key, created);
    return created;
  }

  private async load(stage: string, pin: PinnedFile, key: SessionKey): Promise<LoadedModel> {
    const bytes = await this.o.read(pin.path).catch((err: Error) => {
      throw new ModelLoadError(`stage ${stage}: cannot read model ${pin.path}: ${err.message}`);
    });
    const actual = sha256Hex(bytes);
    if (actual !== pin.sha256) {
      throw new ModelRefusedError(
        `stage ${stage}: model ${pin.path} has sha256 ${shortHash(actual)}, but the run pins ${shortHash(pin.sha256)}: the file changed since the run was planned`,
      );
    }
    let labels: string[] | null = null;
    if (pin.labels) {
      const { path, sha256 } = pin.labels;
      const text = await this.o.read(path).catch((err: Error) => {
        throw new ModelLoadError(`stage ${stage}: cannot read labels ${path}: ${err.message}`);
      });
      if (sha256Hex(text) !== sha256)
        throw new ModelRefusedError(`stage ${stage}: label file ${path} has sha256 ${shortHash(sha256Hex(text))}, but the run pins ${shortHash(sha256)}`);
      labels = parseLabels(text.toString('utf8'), path);
    }
    const file = isS3Url(pin.path) ? await this.materialise(pin.sha256, bytes) : pin.path;
    const { runtime } = this.o;
    const pool = await InferencePool.open(file, {
      executionProviders: runtime.executionProviders,
      intraOpThreads: runtime.intraOpThreads,
      threads: runtime.threads,
      accumulateMs: runtime.accumulateMs,
      output: key.output,
      maxBatch: key.maxBatch,
      graphOptimization: key.graphOptimization,
      numerics: key.numerics,
    });
    const io = pool.io;
    this.o.log?.(
      `${stage}: opened ${pin.name} (sha256 ${shortHash(pin.sha256)}) on ${pool.provider} (${runtime.threads} thread(s), numerics ${key.numerics}), input ${io.inputName} ${io.inputDtype} ` +
        `[${io.fixedBatch ?? 'N'},${io.channels},${io.height},${io.width}]`,
    );
    return { name: stage, pool, preprocess: pin.preprocess, labels, modelPath: pin.path, sha256: pin.sha256, close: () => pool.close() };
  }

  /** Write S3 model bytes to a file named by their hash (atomically), so onnxruntime can open it. */
  private async materialise(sha256: string, bytes: Buffer): Promise<string> {
    const dir = this.o.downloadDir ?? join(tmpdir(), 'cascade-models');
    await makeDir(dir);
    const file = join(dir, `${sha256}.onnx`);
    const present = await stat(file).then(
      (s) => s.size === bytes.length,
      () => false,
    );
    if (!present) {
      const tmp = `${file}.${process.pid}.${basename(file)}.part`;
      await writeFile(tmp, bytes);
      await rename(tmp, file);
    }
    return file;
  }

  /** Close idle models beyond capacity, least recently used first. */
  private async evict(): Promise<void> {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.o.capacity) return;
      if (entry.users > 0) continue;
      this.entries.delete(key);
      await entry.model.then(
        (m) => m.close(),
        () => {},
      );
    }
  }
}

/** A function that runs `fn` the first time only. */
function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
