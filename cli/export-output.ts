/**
 * Where an export's result goes (`--out`): stdout when none is given, a local file (a temporary
 * file renamed into place), or a remote object (`s3://bucket/key`, one upload that the store
 * makes visible only once complete). Either way a failure leaves no partial output behind.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { ConfigError } from '../config/load-config.js';
import { expectedUrls, parseRef } from '../pipeline/storage/location.js';
import type { Stores } from '../pipeline/storage/stores.js';

type Chunks = AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>;

/** Write `chunks` to `out` (a path, file:// URL or remote object URL) whole or not at all, or to stdout when `out` is undefined. */
export async function writeExport(out: string | undefined, chunks: Chunks, stores: Stores): Promise<void> {
  if (out === undefined) {
    for await (const chunk of chunks) if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    return;
  }
  const ref = parseRef(out);
  if (ref.kind === 'unsupported') throw new ConfigError(`--out ${out}: scheme "${ref.scheme}://" is not supported (a file or ${expectedUrls('key')})`);
  if (ref.kind === 'local') return writeLocalFile(ref.path, chunks);
  if (ref.key === '' || ref.key.endsWith('/')) throw new ConfigError(`--out ${out} names a prefix, not an object: end it with a file name`);
  // The producer's own error (a refused row) must reach the caller as itself, not as the upload's failure.
  let producerError: unknown;
  const body = (async function* () {
    try {
      for await (const chunk of chunks) yield typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    } catch (err) {
      producerError = err;
      throw err;
    }
  })();
  try {
    await stores.open({ kind: 'remote', scheme: ref.scheme, bucket: ref.bucket, prefix: '' }).putStream(ref.key, body);
  } catch (err) {
    throw producerError ?? err;
  }
}

/** A temporary file next to `file`, renamed into place once every chunk is written. */
async function writeLocalFile(file: string, chunks: Chunks): Promise<void> {
  const tmp = `${file}.${process.pid}.part`;
  const stream = createWriteStream(tmp);
  // Opened before the first write: a missing folder is one line naming --out, not an error event on the temporary file.
  await once(stream, 'open').catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`--out ${file}: cannot create it (${err.code ?? err.message})`);
  });
  try {
    for await (const chunk of chunks) if (!stream.write(chunk)) await once(stream, 'drain');
    stream.end();
    await once(stream, 'finish');
    await rename(tmp, file);
  } catch (err) {
    stream.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}
