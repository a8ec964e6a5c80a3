/**
 * Builds a validated CascadeConfig from a config file (YAML or JSON), environment variables
 * and command-line overrides, in that order of increasing precedence. Model references may
 * be .onnx files or model-spec files; relative paths resolve against the file naming them.
 */
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CascadeConfig, ModelSpec, type CascadeConfigInput } from './schema.js';

/** A configuration problem, phrased for the person who wrote the config. */
export class ConfigError extends Error {
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

async function readStructured(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
}

function resolvePath(p: string, baseDir: string, env: NodeJS.ProcessEnv): string {
  const expanded = expandEnv(p, env);
  return isAbsolute(expanded) ? expanded : resolve(baseDir, expanded);
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

export interface LoadOptions {
  /** Config file path (YAML or JSON). */
  file?: string;
  /** Values from the command line; they win over the file and the environment. */
  overrides?: Partial<Record<keyof CascadeConfigInput, unknown>>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Load, merge and validate the configuration; throws ConfigError naming each bad field. */
export async function loadConfig(o: LoadOptions = {}): Promise<CascadeConfig> {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const fromFile = o.file ? await readStructured(resolve(cwd, o.file)) : {};
  if (fromFile === null || typeof fromFile !== 'object' || Array.isArray(fromFile)) throw new ConfigError(`${o.file} must hold a mapping of settings`);
  const fileDir = o.file ? dirname(resolve(cwd, o.file)) : cwd;

  const merged: Record<string, unknown> = { ...(fromFile as Record<string, unknown>) };
  if (env.REDIS_URL) merged.redisUrl = env.REDIS_URL;
  const endpoint = env.CASCADE_S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (endpoint || env.AWS_REGION) {
    const s3 = { ...((merged.s3 as object) ?? {}) } as Record<string, unknown>;
    if (endpoint) Object.assign(s3, { endpoint, forcePathStyle: s3.forcePathStyle ?? true });
    if (env.AWS_REGION) s3.region = env.AWS_REGION;
    merged.s3 = s3;
  }
  for (const [k, v] of Object.entries(o.overrides ?? {})) if (v !== undefined) merged[k] = v;

  for (const key of ['little', 'big'] as const) {
    if (merged[key] === undefined) continue;
    // Command-line model paths are relative to the cwd; file ones to the file.
    const base = o.overrides?.[key] !== undefined ? cwd : fileDir;
    merged[key] = await resolveModelRef(merged[key], base, env);
  }
  for (const key of ['little', 'big'] as const) {
    if (merged[key] === undefined) throw new ConfigError(`no ${key} model: pass --${key} <model.onnx|spec.yaml> or set '${key}:' in the config file`);
  }

  const parsed = CascadeConfig.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration${o.file ? ` (${o.file})` : ''}:\n${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** Validate a standalone model spec (for `cascade models inspect`). */
export async function loadModelSpec(ref: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Promise<ModelSpec> {
  const raw = await resolveModelRef(ref, cwd, env);
  const parsed = ModelSpec.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid model spec ${ref}:\n${formatIssues(parsed.error)}`);
  return parsed.data;
}
