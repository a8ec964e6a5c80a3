/**
 * Download a model file and verify its SHA-256 before it takes its final name, so a truncated
 * or tampered download never looks like a model. Already-present files with the right
 * checksum are left alone.
 */
import { CascadeError } from '../../config/errors.js';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { makeDir } from '../storage/make-dir.js';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** What to fetch and what its bytes must hash to. */
export interface Download {
  url: string;
  file: string;
  sha256: string;
}

/** `replaced`: a file with another checksum was there and has been overwritten. */
export type DownloadOutcome = { file: string; status: 'present' | 'downloaded' | 'replaced'; bytes: number };

/** A download whose bytes did not match, or that could not be fetched. */
export class DownloadError extends CascadeError {
  override name = 'DownloadError';
}

/** SHA-256 of a file, or null when it does not exist. */
export async function fileSha256(path: string): Promise<string | null> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(path), hash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return hash.digest('hex');
}

/** Fetch `d.url` into `dir/d.file`, verifying the checksum; `fetchImpl` is injectable for tests. */
export async function downloadVerified(d: Download, dir: string, fetchImpl: typeof fetch = fetch): Promise<DownloadOutcome> {
  const target = join(dir, d.file);
  const existing = await fileSha256(target);
  if (existing === d.sha256) return { file: target, status: 'present', bytes: 0 };
  await makeDir(dir);
  let res: Response;
  try {
    res = await fetchImpl(d.url, { redirect: 'follow' });
  } catch (err) {
    throw new DownloadError(
      `cannot fetch ${d.url}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`,
    );
  }
  if (!res.ok || !res.body) throw new DownloadError(`cannot fetch ${d.url}: HTTP ${res.status} ${res.statusText}`);
  const tmp = `${target}.${process.pid}.part`;
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), tap, createWriteStream(tmp));
    const got = hash.digest('hex');
    if (got !== d.sha256) throw new DownloadError(`${d.url}: checksum mismatch (got sha256 ${got}, expected ${d.sha256}); the file was not kept`);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof DownloadError) throw err;
    throw new DownloadError(`cannot fetch ${d.url}: ${(err as Error).message}`);
  }
  return { file: target, status: existing === null ? 'downloaded' : 'replaced', bytes };
}
