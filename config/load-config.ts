/**
 * Builds a validated CascadeConfig from a config file (YAML or JSON), environment variables
 * and command-line overrides, in that order of increasing precedence. Model references may
 * be .onnx files or model-spec files; relative paths resolve against the file naming them.
 */
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { type AnyCalibrationFile, calibrationMismatch, readAnyCalibrationFile } from './calibration.js';
import { CascadeConfig, ModelSpec, RANK_NEEDS_REFERENCE, SelfCalibratingConfig, type CascadeConfigInput } from './schema.js';
import { CascadeError } from './errors.js';

/** A configuration problem, phrased for the person who wrote the config. */
export class ConfigError extends CascadeError {
  override name = 'ConfigError';
}

/** Expand `${VAR}` and `${VAR:-default}` from `env`. */
export function expandEnv(value: string, env: NodeJS.ProcessEnv): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`environment variable ${name} is not set (used in '${value}')`);
  });
}

/** Render zod issues as "field.path: message (got …)" lines. */
export function formatIssues(error: z.ZodError, root = ''): string {
  return error.issues
    .map((issue) => {
      const path = [root, ...issue.path.map(String)].filter(Boolean).join('.');
      return `  ${path || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}

/**
 * Reads and parses a YAML or JSON settings file (JSON by a `.json` extension, YAML otherwise; an
 * empty YAML file is null). Every config reader goes through here; ConfigError names the file as
 * `shownAs` (default: the path read).
 */
export async function readStructured(path: string, shownAs: string = path): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${shownAs}: ${(err as Error).message}`);
  }
  const json = extname(path).toLowerCase() === '.json';
  try {
    return json ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${shownAs} is not valid ${json ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
}

function resolvePath(p: string, baseDir: string, env: NodeJS.ProcessEnv): string {
  const expanded = expandEnv(p, env);
  // Store URLs (s3://, az://, file://) are read by every worker as they are.
  return isAbsolute(expanded) || /^[a-z][a-z0-9+.-]*:\/\//i.test(expanded) ? expanded : resolve(baseDir, expanded);
}

/** Resolve the relative `sources.localRoots` of a raw config against `baseDir` (the config file's folder), in place. */
export function resolveSourceRoots(merged: Record<string, unknown>, baseDir: string, env: NodeJS.ProcessEnv): void {
  const sources = merged.sources as { localRoots?: unknown } | undefined;
  if (!sources || typeof sources !== 'object' || !Array.isArray(sources.localRoots)) return;
  merged.sources = {
    ...sources,
    localRoots: sources.localRoots.map((r: unknown) => (typeof r === 'string' && r !== '' ? resolve(baseDir, expandEnv(r, env)) : r)),
  };
}

/**
 * Turn a model reference into a raw spec: an .onnx path becomes `{ path }` (torch preprocessing),
 * a .yaml/.json file is read as a spec; an object is taken as a spec. Paths inside resolve
 * against `baseDir` (the directory of the file that named them).
 */
export async function resolveModelRef(ref: unknown, baseDir: string, env: NodeJS.ProcessEnv): Promise<unknown> {
  if (typeof ref === 'string') {
    const path = resolvePath(ref, baseDir, env);
    if (extname(path).toLowerCase() === '.onnx') return { path };
    const spec = await readStructured(path);
    return resolveModelRef(spec, dirname(path), env);
  }
  if (ref && typeof ref === 'object') {
    const spec = { ...(ref as Record<string, unknown>) };
    for (const key of ['path', 'labels'] as const) if (typeof spec[key] === 'string') spec[key] = resolvePath(spec[key] as string, baseDir, env);
    return spec;
  }
  return ref;
}

/** `base` S3 settings with the environment's endpoint and region applied, or undefined when the environment sets neither. */
export function s3SettingsFromEnv(base: unknown, env: NodeJS.ProcessEnv): Record<string, unknown> | undefined {
  const endpoint = env.CASCADE_S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (!endpoint && !env.AWS_REGION) return undefined;
  const s3 = { ...((base as object) ?? {}) } as Record<string, unknown>;
  if (endpoint) Object.assign(s3, { endpoint, forcePathStyle: s3.forcePathStyle ?? true });
  if (env.AWS_REGION) s3.region = env.AWS_REGION;
  return s3;
}

export interface LoadOptions {
  /** Config file path (YAML or JSON). */
  file?: string;
  /** Values from the command line; they win over the file and the environment. */
  overrides?: Partial<Record<keyof CascadeConfigInput, unknown>>;
  /** A calib.json from `cascade calibrate`: its threshold and metric win over file and env, flags win over it. */
  calibration?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * A self-calibrating run (`--target-agreement`): its metric is rank unless the file or a flag
   * names one, and rank needs no reference (the run's warm-up builds it).
   */
  selfCalibrating?: boolean;
}

/** Load, merge and validate the configuration; throws ConfigError naming each bad field. */
export async function loadConfig(o: LoadOptions = {}): Promise<CascadeConfig> {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const fromFile = o.file ? await readStructured(resolve(cwd, o.file)) : {};
  if (fromFile === null || typeof fromFile !== 'object' || Array.isArray(fromFile)) throw new ConfigError(`${o.file} must hold a mapping of settings`);
  const fileDir = o.file ? dirname(resolve(cwd, o.file)) : cwd;

  // Defaults that depend on the command sit below the file; the schema's own defaults below them.
  const defaults = o.selfCalibrating ? { metric: 'rank' } : {};
  const merged: Record<string, unknown> = { ...defaults, ...(fromFile as Record<string, unknown>) };
  resolveSourceRoots(merged, fileDir, env);
  if (env.REDIS_URL) merged.redisUrl = env.REDIS_URL;
  const s3 = s3SettingsFromEnv(merged.s3, env);
  if (s3) merged.s3 = s3;
  let calibration: AnyCalibrationFile | undefined;
  if (o.calibration) {
    calibration = await readAnyCalibrationFile(resolve(cwd, o.calibration)).catch((err: Error) => {
      throw new ConfigError(err.message);
    });
    applyCalibration(merged, calibration, o.calibration);
  }
  for (const [k, v] of Object.entries(o.overrides ?? {})) if (v !== undefined) merged[k] = v;

  if (merged.stages !== undefined) await expandStages(merged, o.overrides ?? {}, fileDir, env);
  for (const key of ['little', 'big'] as const) {
    if (merged[key] === undefined) continue;
    // Command-line model paths are relative to the cwd; file ones to the file.
    const base = o.overrides?.[key] !== undefined ? cwd : fileDir;
    merged[key] = await resolveModelRef(merged[key], base, env);
  }
  for (const key of ['little', 'big'] as const) {
    if (merged[key] === undefined) throw new ConfigError(`no ${key} model: pass --${key} <model.onnx|spec.yaml> or set '${key}:' in the config file`);
  }

  // The schema refuses it too; here it is one line, since the usual cause is `--metric rank` alone.
  if (merged.metric === 'rank' && merged.rankReference === undefined && !o.selfCalibrating) throw new ConfigError(RANK_NEEDS_REFERENCE);
  const parsed = (o.selfCalibrating ? SelfCalibratingConfig : CascadeConfig).safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration${o.file ? ` (${o.file})` : ''}:\n${formatIssues(parsed.error)}`);
  if (calibration) {
    const paths = parsed.data.stages?.map((st) => st.model.path) ?? [parsed.data.little.path, parsed.data.big.path];
    const problem = calibrationMismatch(calibration, paths);
    if (problem) throw new ConfigError(`calibration ${o.calibration} does not fit this run: ${problem}; run \`cascade calibrate\` for these models`);
  }
  return parsed.data;
}

/** Put a calibration's metric and thresholds into the raw config (before flags, which win). */
function applyCalibration(merged: Record<string, unknown>, cal: AnyCalibrationFile, path: string): void {
  const chain = 'kind' in cal;
  const thresholds = chain ? cal.stages.slice(0, -1).map((st) => st.threshold ?? 1) : [cal.threshold];
  if (cal.cost?.verdict === 'big-only') merged.route = 'big-only';
  if (!chain && cal.threshold > 1 && cal.cost?.verdict !== 'big-only') {
    throw new ConfigError(
      `calibration ${path}: its rule (${cal.rule}) found no threshold at which the little model may answer ` +
        `(${cal.reason}); the cascade would be big-only. Try another little model (\`cascade search-saver\`) or a looser rule`,
    );
  }
  merged.metric = cal.metric;
  if (!chain && cal.rankReference) merged.rankReference = cal.rankReference;
  if (Array.isArray(merged.stages)) {
    const stages = merged.stages as unknown[];
    if (stages.length !== thresholds.length + 1)
      throw new ConfigError(`calibration ${path} is for ${thresholds.length + 1} stages, but 'stages:' lists ${stages.length}`);
    merged.stages = stages.map((st, i) => (i < thresholds.length && st && typeof st === 'object' ? { ...st, threshold: thresholds[i] } : st));
  } else if (chain) {
    throw new ConfigError(`calibration ${path} is for a ${cal.stages.length}-stage chain; list the same models under 'stages:' in the config file`);
  } else {
    merged.threshold = cal.threshold;
    // Audits hold the run to the agreement this calibration promised, unless the config names its own.
    const audit = merged.audit as Record<string, unknown> | undefined;
    // A guaranteed agreement promises its bound; a point-estimate rule only its calibration figure.
    const promised = cal.guarantee?.kind === 'agreement' ? cal.guarantee.bound : cal.expected.agreement;
    if (audit && typeof audit === 'object' && audit.expectAgreement === undefined) merged.audit = { ...audit, expectAgreement: promised };
  }
}

/**
 * The N-stage form: resolve each stage's model reference against the config file, refuse a mix
 * with little/big/threshold (which one would win is not obvious), and fill little/big/threshold
 * from the first and last stage so code reading the two-stage fields keeps working.
 */
async function expandStages(
  merged: Record<string, unknown>,
  overrides: NonNullable<LoadOptions['overrides']>,
  fileDir: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const stages = merged.stages;
  if (!Array.isArray(stages)) throw new ConfigError(`stages: expected a list of { name?, model, threshold } (got ${JSON.stringify(stages)})`);
  const mixed = (['little', 'big', 'threshold'] as const).filter((k) => merged[k] !== undefined);
  if (mixed.length > 0) {
    const how = mixed.map((k) => (overrides[k] !== undefined ? `--${k}` : `'${k}:'`)).join(', ');
    throw new ConfigError(`stages: given together with ${how}; use either stages (thresholds per stage) or little/big/threshold`);
  }
  merged.stages = await Promise.all(
    stages.map(async (stage: unknown) =>
      stage && typeof stage === 'object' && 'model' in stage
        ? { ...stage, model: await resolveModelRef((stage as { model: unknown }).model, fileDir, env) }
        : stage,
    ),
  );
  const resolved = merged.stages as Array<{ model?: unknown; threshold?: unknown }>;
  merged.little = resolved[0]?.model;
  merged.big = resolved[resolved.length - 1]?.model;
  if (typeof resolved[0]?.threshold === 'number') merged.threshold = resolved[0].threshold;
}

/** Validate a standalone model spec (for `cascade models inspect`). */
export async function loadModelSpec(ref: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Promise<ModelSpec> {
  const raw = await resolveModelRef(ref, cwd, env);
  const parsed = ModelSpec.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid model spec ${ref}:\n${formatIssues(parsed.error)}`);
  return parsed.data;
}
