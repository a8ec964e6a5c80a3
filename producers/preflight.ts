/**
 * Pre-flight of `cascade run` and `cascade submit`, before any model loads: the source and
 * output URLs are well formed, the source can be listed (its first entry), and the output
 * location can be written (a probe object written and deleted). Each problem is one precise
 * ConfigError (exit 2): EROFS or EACCES, not the ENOENT a recursive mkdir reports.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../config/load-config.js';
import { writeProbeKey } from '../pipeline/results/output-layout.js';
import { expectedUrls, parseLocation, parseRef } from '../pipeline/storage/location.js';
import type { Stores } from '../pipeline/storage/stores.js';
import { listInputs } from './inputs/input-formats.js';
import type { InputColumns } from '../config/schema.js';

export interface PreflightOptions {
  extensions: readonly string[];
  /** Parquet sources: the run's columns (config `sources.columns`). */
  columns?: InputColumns;
  /** The process's stores: the source is listed and the output opened through them. */
  stores: Stores;
}

const CODES: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is a file, not a directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
};

/** Why local `dir` cannot be written, found at its nearest existing ancestor (mkdir -p says ENOENT for EROFS). */
async function localWriteProblem(dir: string, err: NodeJS.ErrnoException): Promise<string> {
  let at = dir;
  for (;;) {
    const st = await fs.stat(at).catch(() => null);
    if (st) {
      if (!st.isDirectory()) return `ENOTDIR: ${at} is a file, not a directory`;
      try {
        await fs.access(at, fs.constants.W_OK);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'EACCES';
        return `${code}: ${at} is not writable (${CODES[code] ?? code})`;
      }
      break;
    }
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  const code = err.code ?? '';
  return code ? `${code}${CODES[code] ? ` (${CODES[code]})` : ''}: ${err.message}` : err.message;
}

/** Throws a ConfigError naming the first problem with `source` or `out`; resolves when both look usable. */
export async function preflightRun(source: string, out: string, o: PreflightOptions): Promise<void> {
  // Well-formed URLs.
  let location: ReturnType<typeof parseLocation>;
  try {
    location = parseLocation(out);
  } catch (err) {
    throw new ConfigError(`--out: ${(err as Error).message}`);
  }
  try {
    const ref = parseRef(source);
    if (ref.kind === 'unsupported')
      throw new Error(`unsupported source ${JSON.stringify(source)}: scheme "${ref.scheme}" (expected a folder, a key-list file or ${expectedUrls('prefix')})`);
  } catch (err) {
    throw new ConfigError(`source: ${(err as Error).message}`);
  }

  // The source lists (its first entry; a missing source is a SourceNotFoundError).
  const refs = listInputs(source, { extensions: o.extensions, columns: o.columns, stores: o.stores });
  try {
    await refs.next();
  } finally {
    await refs.return(undefined);
  }

  // The output is writable: a probe object written and deleted.
  const store = o.stores.open(location);
  const probe = writeProbeKey(randomUUID());
  try {
    await store.put(probe, '');
    await store.delete(probe);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = location.kind === 'local' ? await localWriteProblem(location.path, e) : e.message.split('\n')[0];
    throw new ConfigError(`--out ${store.describe()} is not writable: ${why}`);
  }
}
