/**
 * The configuration of a worker process (`cascade worker`): infrastructure and throughput only.
 * Models, thresholds, metric, limits and numerics decide rows, so a worker takes them from each
 * run's spec; the same fields in a shared config file are ignored here, and said so.
 */
import { dirname, resolve } from 'node:path';
import { ConfigError, formatIssues, readStructured, s3SettingsFromEnv } from './load-config.js';
import { z } from 'zod';
import { resolveSourceRoots } from './load-config.js';
import { CascadeConfigFields, SourceSettings } from './schema.js';

/** Config fields that decide a run's rows or its output files: workers follow each run's values instead. */
export const RUN_FIELDS = [
  'little',
  'big',
  'stages',
  'threshold',
  'metric',
  'rankReference',
  'audit',
  'limits',
  'numerics',
  'probeTolerance',
  'batchSize',
  'extensions',
  'output',
  'window',
] as const;

/** `sources` fields that say how a run's prefix is listed: the submitter's, carried to the merge role in the run's listing plan. */
export const LISTING_FIELDS = ['listConcurrency', 'listSplits', 'listPagesAhead'] as const;

export const WorkerConfig = CascadeConfigFields.omit({
  little: true,
  big: true,
  stages: true,
  threshold: true,
  metric: true,
  rankReference: true,
  audit: true,
  limits: true,
  numerics: true,
  probeTolerance: true,
  batchSize: true,
  extensions: true,
  output: true,
  window: true,
}).extend({
  // A fleet worker reads no local file unless its own config names the folders it may read.
  sources: SourceSettings.omit({ listConcurrency: true, listSplits: true, listPagesAhead: true })
    .extend({ localRoots: z.array(z.string().min(1)).default([]) })
    .default({ localRoots: [] }),
});
export type WorkerConfig = typeof WorkerConfig._output;

export interface WorkerConfigOptions {
  file?: string;
  overrides?: Partial<Record<keyof WorkerConfig, unknown>>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Load a worker's settings; `ignored` lists the run fields the file set, which the worker does not use. */
export async function loadWorkerConfig(o: WorkerConfigOptions = {}): Promise<{ config: WorkerConfig; ignored: string[] }> {
  const env = o.env ?? process.env;
  const fromFile = o.file ? await readStructured(resolve(o.cwd ?? process.cwd(), o.file)) : {};
  if (fromFile === null || typeof fromFile !== 'object' || Array.isArray(fromFile)) throw new ConfigError(`${o.file} must hold a mapping of settings`);
  const merged: Record<string, unknown> = { ...(fromFile as Record<string, unknown>) };
  resolveSourceRoots(merged, o.file ? dirname(resolve(o.cwd ?? process.cwd(), o.file)) : (o.cwd ?? process.cwd()), env);
  const ignored: string[] = RUN_FIELDS.filter((k) => merged[k] !== undefined);
  for (const k of ignored) delete merged[k];
  const sources = merged.sources;
  if (sources !== null && typeof sources === 'object' && !Array.isArray(sources)) {
    const kept: Record<string, unknown> = { ...(sources as Record<string, unknown>) };
    for (const k of LISTING_FIELDS.filter((f) => kept[f] !== undefined)) {
      ignored.push(`sources.${k}`);
      delete kept[k];
    }
    merged.sources = kept;
  }
  if (env.REDIS_URL) merged.redisUrl = env.REDIS_URL;
  const s3 = s3SettingsFromEnv(merged.s3, env);
  if (s3) merged.s3 = s3;
  for (const [k, v] of Object.entries(o.overrides ?? {})) if (v !== undefined) merged[k] = v;
  const parsed = WorkerConfig.safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid configuration${o.file ? ` (${o.file})` : ''}:\n${formatIssues(parsed.error)}`);
  return { config: parsed.data, ignored };
}
