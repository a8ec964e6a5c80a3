/**
 * Sharded inputs made in tests: WebDataset tar shards (tar-stream) and Parquet files
 * (hyparquet-writer, the writer the project's Parquet manifests use), from member lists or columns.
 */
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as tar from 'tar-stream';

/** A tar member: name, bytes, and a type other than a regular file where wanted. */
export interface Member {
  name: string;
  body?: Buffer | string;
  type?: 'file' | 'symlink' | 'directory';
  linkname?: string;
}

/** The bytes of a tar holding `members`, in order. */
export async function tarShard(members: Member[]): Promise<Buffer> {
  const pack = tar.pack();
  // Read while packing: an entry's callback waits for the pack's buffer to drain.
  const chunks: Buffer[] = [];
  const read = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const m of members) {
    const body = m.body === undefined ? Buffer.alloc(0) : Buffer.from(m.body);
    const header = { name: m.name, type: m.type ?? 'file', ...(m.linkname ? { linkname: m.linkname } : {}) };
    const done = (resolve: () => void, reject: (err: Error) => void) => (err?: Error | null) => (err ? reject(err) : resolve());
    await new Promise<void>((resolve, reject) =>
      m.type && m.type !== 'file' ? pack.entry(header, done(resolve, reject)) : pack.entry(header, body, done(resolve, reject)),
    );
  }
  pack.finalize();
  await read;
  return Buffer.concat(chunks);
}

/** A WebDataset sample's members: the image as `<key>.<ext>`, with a `.cls` and a `.json` beside it. */
export function sampleMembers(key: string, ext: string, image: Buffer, label = 0): Member[] {
  return [
    { name: `${key}.cls`, body: String(label) },
    { name: `${key}.${ext}`, body: image },
    { name: `${key}.json`, body: JSON.stringify({ key }) },
  ];
}

/** The bytes of a Parquet file with these columns (`rowGroupSize` rows a row group). */
export function parquetBytes(columns: Array<{ name: string; data: unknown[]; type: 'STRING' | 'BYTE_ARRAY' | 'INT32' }>, rowGroupSize = 1000): Buffer {
  const columnData = columns.map((c) => ({ name: c.name, data: c.data as never, type: c.type, nullable: true }));
  return Buffer.from(parquetWriteBuffer({ columnData, rowGroupSize }));
}
