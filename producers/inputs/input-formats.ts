/**
 * The input formats, as a table: the first row whose `matches` takes a source lists it. A new
 * format is a file (producers/inputs/<format>.ts) and a row here.
 */
import type { InputFormat, ListInputOptions } from './input-format.js';
import type { ListedInput } from './listed-input.js';
import { type CascadeConfig, listingSplitOf } from '../../config/schema.js';
import type { Stores } from '../../pipeline/storage/stores.js';
import type { RunSpec } from '../../queue/jobs.js';
import type { ListingPlan, ResumableSource } from '../listing-cursor.js';
import { loose } from './loose.js';
import { parquet } from './parquet.js';
import { webDataset } from './webdataset.js';

/** Tried in order; loose takes whatever the others do not. */
export const INPUT_FORMATS: readonly InputFormat[] = [webDataset, parquet, loose];

/** The format of `source`. */
export function inputFormatOf(source: string): InputFormat {
  return INPUT_FORMATS.find((f) => f.matches(source)) ?? loose;
}

/** The inputs of `source` in a deterministic order, by its format's listing. */
export async function* listInputs(source: string, opts: ListInputOptions): AsyncGenerator<string | ListedInput> {
  if (typeof source !== 'string' || source.trim() === '') throw new Error('Empty source: expected a folder, a key-list file, shards or s3://bucket/prefix');
  yield* inputFormatOf(source).list(source, opts);
}

/** The local roots a one-process `cascade run` of `source` may read when its config names none. */
export function inputLocalRoots(source: string, opts: { asList?: boolean; cwd?: string } = {}): string[] {
  return inputFormatOf(source).localRoots(source, opts);
}

/** `plan`'s source, resumable at any cursor its format's listing yields (remote shards and prefixes through `stores`). */
export function resumableSource(plan: ListingPlan, stores: Stores): ResumableSource {
  const format = inputFormatOf(plan.source);
  return {
    plan,
    open: (cursor, onDuplicate) =>
      format.listFrom(
        plan.source,
        { extensions: plan.extensions, ...(plan.columns ? { columns: plan.columns } : {}), ...(plan.split ? { split: plan.split } : {}), stores, onDuplicate },
        cursor,
      ),
  };
}

/**
 * What a submission lists `source` from: every format resumable (the run keeps a window of
 * batches in flight, its cursor in Redis, and another process lists on from the plan).
 */
export function submissionSource(source: string, opts: ListInputOptions & { stores: Stores }): ResumableSource {
  return resumableSource(
    { source, extensions: [...opts.extensions], ...(opts.columns ? { columns: opts.columns } : {}), ...(opts.split ? { split: opts.split } : {}) },
    opts.stores,
  );
}

/** A run's submission source as `cascade run` and `cascade submit` list it: the config's extensions and split settings, the run's columns. */
export function configuredSubmissionSource(
  config: Pick<CascadeConfig, 'extensions' | 'sources'>,
  spec: Pick<RunSpec, 'source' | 'columns'>,
  stores: Stores,
): ResumableSource {
  return submissionSource(spec.source, { extensions: config.extensions, columns: spec.columns, split: listingSplitOf(config.sources), stores });
}
