/**
 * Calibration tables: each image's probability rows from every model of a chain, paired with its
 * ground-truth label and split deterministically into a calibration part and a test part.
 */
import { basename, relative, resolve, sep } from 'node:path';
import { isRemoteUrl, parseRemoteUrl } from '../storage/location.js';
import type { ChainEntry } from './chain.js';
import { matchLabels } from './ground-truth.js';
import type { ScoredImages } from './prob-cache.js';
import { splitForCalibration } from './split.js';
import type { CalibrationPin } from '../../config/calibration.js';
import type { CalibrationEntry } from './sweep.js';

/** A model's answers on the listed images. */
export interface ScoredModel {
  name: string;
  path: string;
  gmacsPerImage: number;
  scored: ScoredImages;
  /** The model's content hash and its conformance probe where it was scored (calib.json records both). */
  pin: CalibrationPin;
}

/**
 * The folder a sharded source's (`….tar`, `….parquet`) names are relative to: the one above its
 * first brace or glob, else its file's folder; `s3://b/wds/{0..9}.tar` → `s3://b/wds/`.
 */
export function shardSourceRoot(source: string): string {
  const wild = source.search(/[{*?]/);
  const literal = wild < 0 ? source : source.slice(0, wild);
  return literal.slice(0, literal.lastIndexOf('/') + 1);
}

/**
 * An image's name relative to the source (for labels and the split): stable across machines. A
 * sharded source's sample `<shard>#<sampleKey>` is named by its shard relative to the source's
 * folder: `000000.tar#cat-1` for `shards/{000000..000003}.tar`.
 */
export function relativeName(ref: string, source: string): string {
  if (/\.(tar|parquet)$/i.test(source)) return relativeName(ref, shardSourceRoot(source));
  if (isRemoteUrl(ref) && isRemoteUrl(source)) {
    const r = parseRemoteUrl(ref);
    const s = parseRemoteUrl(source);
    if (r.scheme === s.scheme && r.bucket === s.bucket && r.key.startsWith(s.key)) return r.key.slice(s.key.length).replace(/^\/+/, '');
    return r.key;
  }
  if (!isRemoteUrl(ref) && !isRemoteUrl(source)) {
    const rel = relative(resolve(source), ref);
    // A list-file source (or a ref outside the folder) has no common root: use the file name.
    if (rel === '' || rel.startsWith('..')) return basename(ref);
    return rel.split(sep).join('/');
  }
  return basename(ref);
}

export interface Tables {
  calibration: CalibrationEntry[];
  test: CalibrationEntry[];
  /** Images that either model could not score, left out of both parts. */
  skipped: Array<{ key: string; message: string }>;
}

/** Pair two models' rows per image, attach labels, and split into calibration and test parts. */
export function buildTables(
  refs: readonly string[],
  source: string,
  little: ScoredModel,
  big: ScoredModel,
  truth: ReadonlyMap<string, number> | null,
  calibrationFraction: number,
): Tables {
  const { calibration, test, skipped } = buildChainTables(refs, source, [little, big], truth, calibrationFraction);
  const pair = (e: ChainEntry): CalibrationEntry => ({ key: e.key, little: e.rows[0]!, big: e.rows[1]!, ...(e.label === undefined ? {} : { label: e.label }) });
  return { calibration: calibration.map(pair), test: test.map(pair), skipped };
}

/** Each image's rows of N models in stage order, labels attached, split into calibration and test parts. */
export function buildChainTables(
  refs: readonly string[],
  source: string,
  models: readonly ScoredModel[],
  truth: ReadonlyMap<string, number> | null,
  calibrationFraction: number,
): { calibration: ChainEntry[]; test: ChainEntry[]; skipped: Tables['skipped'] } {
  const names = refs.map((r) => relativeName(r, source));
  const labels = truth ? matchLabels(names, truth) : names.map(() => undefined);
  if (truth && labels.every((l) => l === undefined)) {
    throw new Error(
      `none of the ${refs.length} images matched a row of the labels file; its image column must hold paths relative to the source (e.g. ${JSON.stringify(names[0])}) or file names`,
    );
  }
  const entries: Array<ChainEntry & { name: string }> = [];
  const skipped: Tables['skipped'] = [];
  refs.forEach((key, i) => {
    const rows = models.map((m) => m.scored.probs.get(key));
    if (rows.some((r) => r === undefined)) {
      skipped.push({ key, message: models.map((m) => m.scored.errors.get(key)).find((e) => e !== undefined) ?? 'not scored' });
      return;
    }
    const classes = rows[0]!.length;
    const odd = rows.findIndex((r) => r!.length !== classes);
    if (odd >= 0)
      throw new Error(`${models[0]!.name} has ${classes} classes but ${models[odd]!.name} has ${rows[odd]!.length}; a cascade needs the same label space`);
    const label = labels[i];
    if (label !== undefined && label >= classes)
      throw new Error(`the labels file gives ${names[i]} class ${label}, but the models have ${classes} classes (0..${classes - 1})`);
    entries.push({ key, name: names[i]!, rows: rows as Float32Array[], ...(label === undefined ? {} : { label }) });
  });
  const { calibration, test } = splitForCalibration(entries, (e) => e.name, calibrationFraction);
  return { calibration, test, skipped };
}
