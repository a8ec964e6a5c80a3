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
import { createHash } from 'node:crypto';
import type { ExecutionProvider, Numerics, SessionNumerics } from '../../config/schema.js';
import { InferencePool } from '../inference/inference-pool.js';
import { ModelLoadError } from '../inference/model-session.js';
import { currentPlatform, describePlatform, type Platform } from '../inference/platform.js';
import { isRemoteUrl } from '../storage/location.js';
import { parseLabels } from './labels.js';
import { type ModelPin, sha256Hex, shortHash } from './model-pin.js';
import { compareProbe, runProbe, type Probe, type ProbeComparison } from './probe.js';
import type { ProbeCache, ProbeIdentity } from './probe-cache.js';
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
  /** Probes kept across processes (pipeline/models/probe-cache.ts); absent: every process probes the models it opens. */
  probeCache?: ProbeCache | null;
  log?: (msg: string) => void;
}

/** What decides a model's session: the bytes and every option that changes its outputs. */
/** A pin without its probe: what opening the model needs. */
export type PinnedFile = Omit<ModelPin, 'probe'>;

type SessionKey = Pick<ModelPin, 'sha256' | 'output' | 'graphOptimization' | 'maxBatch' | 'labels'> & { numerics: SessionNumerics };

interface Entry {
  model: Promise<LoadedModel>;
  users: number;
  /**
   * This session's outputs on the probe images, by preprocessing (fixed images: one probe per
   * session and preprocessing serves every run; pins may share a session with other preprocessing).
   */
  probes: Map<string, Promise<Probe>>;
}

/** A model borrowed from the cache; release it when the batch is done. */
export interface ModelLease {
  model: LoadedModel;
  release(): void;
}

/** A model verified for a run: its probe against the run's reference, and the numerics it labels with. */
export interface VerifiedLease extends ModelLease {
  probe: ProbeComparison;
  /** What the session runs: the run's numerics, or under 'auto' the one chosen on this machine. */
  numerics: SessionNumerics;
}

/** Auto choices remembered per process, at most (a choice is a few hundred bytes). */
const MAX_AUTO_CHOICES = 256;

/** Bounded, reference-counted set of open models keyed by content and session options. */
export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  /** Under numerics 'auto': the numerics chosen per native session, reference and tolerance, so the choice is made once. */
  private readonly autoChoices = new Map<string, SessionNumerics>();
  readonly platform: Platform = currentPlatform();

  constructor(private readonly o: ModelCacheOptions) {}

  /**
   * Borrow the model a run pins for stage `stage`, verified: its file must hash to the pin and its
   * probe must match the pin's reference within `tolerance`. Under 'auto' the native session is
   * tried first and kept only if its probe matches; otherwise the exact one, held to the same
   * check. Throws ModelRefusedError when the model fails it.
   */
  async acquire(stage: string, pin: ModelPin, numerics: Numerics, tolerance: number, runId: string): Promise<VerifiedLease> {
    if (numerics !== 'auto') return this.acquireAs(stage, pin, numerics, tolerance, runId);
    const native = await this.nativeIfConforming(stage, pin, tolerance);
    return native ?? this.acquireAs(stage, pin, 'exact', tolerance, runId, ' (numerics auto: native kernels differed here too)');
  }

  /** Borrow a model by its pin without a probe check: for planning, which records the reference. */
  async acquireUnverified(stage: string, pin: PinnedFile, numerics: SessionNumerics): Promise<ModelLease> {
    const { model, release } = await this.borrow(stage, pin, numerics);
    return { model, release };
  }

  /**
   * The model's probe on this machine with `numerics`: the reference a run records at planning.
   * From the probe cache when it holds one for a provider known without opening the model (the
   * model is then not opened at all), else from the open session.
   */
  async referenceProbe(stage: string, pin: PinnedFile, numerics: SessionNumerics): Promise<Probe> {
    const provider = this.providerBeforeOpening();
    const cached = provider ? await this.o.probeCache?.get(this.probeIdentity(pin, numerics, provider)) : null;
    if (cached) return cached;
    const { entry, model, release } = await this.borrow(stage, pin, numerics);
    try {
      return await this.probeOf(entry, model, pin, numerics);
    } finally {
      release();
    }
  }

  private async acquireAs(stage: string, pin: ModelPin, numerics: SessionNumerics, tolerance: number, runId: string, note = ''): Promise<VerifiedLease> {
    const { entry, model, release } = await this.borrow(stage, pin, numerics);
    try {
      const probe = compareProbe(pin.probe, await this.probeOf(entry, model, pin, numerics), tolerance);
      if (!probe.ok) {
        throw new ModelRefusedError(
          `stage ${stage} refuses model ${pin.name} (sha256 ${shortHash(pin.sha256)}) for run ${runId}: its probe outputs differ from the run's reference by up to ` +
            `${probe.maxDiff.toFixed(4)} (tolerance ${tolerance})${probe.top1Changed.length ? `, top-1 changed on ${probe.top1Changed.join(', ')}` : ''}; ` +
            `this worker: ${describePlatform(this.platform)}, provider ${model.pool.provider}, numerics ${numerics}${note}; ` +
            `reference: ${describePlatform(pin.probe.platform)}, provider ${pin.probe.provider}`,
        );
      }
      return { model, release, probe, numerics };
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Under 'auto': the native session, verified, when its probe matches the run's (exact)
   * reference; null when it does not, and the native session is then closed if no one uses it.
   * The choice is remembered, and a cached native probe that differs spares opening it at all.
   */
  private async nativeIfConforming(stage: string, pin: ModelPin, tolerance: number): Promise<VerifiedLease | null> {
    const key = this.keyOf(pin, 'native');
    const choiceKey = createHash('sha256')
      .update(JSON.stringify([key, tolerance, pin.preprocess, pin.probe]))
      .digest('hex');
    const chosen = this.autoChoices.get(choiceKey);
    if (chosen === 'exact') return null;
    const decide = (choice: SessionNumerics, probe: ProbeComparison) => {
      if (this.autoChoices.size >= MAX_AUTO_CHOICES) this.autoChoices.clear();
      this.autoChoices.set(choiceKey, choice);
      this.o.log?.(
        `${stage}: numerics auto chose ${choice} for ${pin.name} (sha256 ${shortHash(pin.sha256)}): native kernels' probe differs from the run's exact reference by up to ${probe.maxDiff.toExponential(2)} (tolerance ${tolerance})${probe.top1Changed.length ? `, top-1 changed on ${probe.top1Changed.join(', ')}` : ''}`,
      );
    };
    const provider = chosen ? null : this.providerBeforeOpening();
    const cached = provider ? await this.o.probeCache?.get(this.probeIdentity(pin, 'native', provider)) : null;
    if (cached) {
      const probe = compareProbe(pin.probe, cached, tolerance);
      if (!probe.ok) {
        decide('exact', probe);
        return null;
      }
    }
    const { entry, model, release } = await this.borrow(stage, pin, 'native');
    let probe: ProbeComparison;
    try {
      probe = compareProbe(pin.probe, await this.probeOf(entry, model, pin, 'native'), tolerance);
    } catch (err) {
      release();
      throw err;
    }
    if (!chosen || !probe.ok) decide(probe.ok ? 'native' : 'exact', probe);
    if (probe.ok) {
      // The exact session planning opened for the reference (`cascade run`) is of no use to this run.
      if (!chosen) await this.closeIdle(this.keyOf(pin, 'exact'));
      return { model, release, probe, numerics: 'native' };
    }
    release();
    await this.closeIdle(key);
    return null;
  }
  /** This session's probe with `pin`'s preprocessing: once per session, from the probe cache when it has it. */
  private probeOf(entry: Entry, model: LoadedModel, pin: PinnedFile, numerics: SessionNumerics): Promise<Probe> {
    const key = JSON.stringify(pin.preprocess);
    let probe = entry.probes.get(key);
    if (!probe) {
      probe = this.probeOnce(model, pin, numerics);
      entry.probes.set(key, probe);
      probe.catch(() => entry.probes.delete(key));
    }
    return probe;
  }

  private async probeOnce(model: LoadedModel, pin: PinnedFile, numerics: SessionNumerics): Promise<Probe> {
    // Only CPU probes are kept: a GPU's numbers also depend on the device and its driver, which the key does not name.
    const cache = model.pool.provider === 'cpu' ? this.o.probeCache : null;
    const id = this.probeIdentity(pin, numerics, model.pool.provider);
    const cached = await cache?.get(id);
    if (cached) return cached;
    const probe = await runProbe(model.pool, pin.preprocess, this.platform);
    const failed = await cache?.put(id, probe);
    if (failed) this.o.log?.(`cannot keep the probe of ${pin.name} in ${cache!.dir} (${failed.message}); the next run probes it again`);
    return probe;
  }

  private probeIdentity(pin: PinnedFile, numerics: SessionNumerics, provider: string): ProbeIdentity {
    const { sha256, output, graphOptimization, preprocess } = pin;
    return { sha256, output, graphOptimization, preprocess, numerics, provider, platform: this.platform };
  }

  /** The provider a session will run on, where that is certain before opening it: the CPU provider, if first (always present). */
  private providerBeforeOpening(): string | null {
    return this.o.runtime.executionProviders[0] === 'cpu' ? 'cpu' : null;
  }

  /** Close the session under `key` if no one borrows it. */
  private async closeIdle(key: string): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry || entry.users > 0) return;
    this.entries.delete(key);
    await entry.model.then(
      (m) => m.close(),
      () => {},
    );
  }

  private async borrow(stage: string, pin: PinnedFile, numerics: SessionNumerics): Promise<ModelLease & { entry: Entry }> {
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

  private keyOf(pin: PinnedFile, numerics: SessionNumerics): string {
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
    const created: Entry = { model: this.load(stage, pin, JSON.parse(key) as SessionKey), users: 0, probes: new Map() };
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
    const file = isRemoteUrl(pin.path) ? await this.materialise(pin.sha256, bytes) : pin.path;
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
