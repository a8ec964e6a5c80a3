/**
 * Sharded sources resume from a shard cursor (producers/inputs/shard-listing.ts, through the
 * input-format table's resumableSource): from the cursor after any input, tar shards and Parquet
 * files (image and URL columns) list exactly the inputs after it, with the same refs and places;
 * repeats before the cursor are not counted again (a URL column's are still dropped across files);
 * a shard list or shard that changed under a cursor is refused in one line. Real files, no Redis.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Stores } from '../../pipeline/storage/stores.js';
import { resumableSource } from '../../producers/inputs/input-formats.js';
import type { ListedInput } from '../../producers/inputs/listed-input.js';
import { type ListingCursor, parseCursor } from '../../producers/listing-cursor.js';
import { parquetBytes, sampleMembers, tarShard } from '../helpers/shard-fixture.js';

let root: string;
const stores = new Stores();

interface Listing {
  inputs: ListedInput[];
  cursors: ListingCursor[];
  /** Repeats dropped before each input was yielded. */
  dupsBefore: number[];
  duplicates: number;
}

async function collect(source: string, cursor: ListingCursor | null): Promise<Listing> {
  const out: Listing = { inputs: [], cursors: [], dupsBefore: [], duplicates: 0 };
  const listing = resumableSource({ source, extensions: ['.png'] }, stores).open(cursor, () => void out.duplicates++);
  for await (const { cursor: after, ...input } of listing) {
    out.inputs.push(input);
    out.cursors.push(after);
    out.dupsBefore.push(out.duplicates);
  }
  return out;
}

/** From every cursor the whole listing yields, the rest of it, and the repeats still to come; returns the whole listing. */
async function expectResumesEverywhere(source: string): Promise<Listing> {
  const all = await collect(source, null);
  for (const [i, cursor] of all.cursors.entries()) {
    // The stored form: JSON in Redis, read back through the schema.
    const rest = await collect(source, parseCursor(JSON.stringify(cursor)));
    expect(rest.inputs, `after ${JSON.stringify(cursor)}`).toEqual(all.inputs.slice(i + 1));
    // A pass saves the repeats before the input it stopped after; the resumed listing counts the rest.
    expect(all.dupsBefore[i]! + rest.duplicates, `repeats after ${JSON.stringify(cursor)}`).toBe(all.duplicates);
  }
  return all;
}

const png = (n: number) => Buffer.from(`not really a png ${n}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-shard-cursor-'));
  await mkdir(join(root, 'wds'));
  // Shard 1 is missing: one not-found input stands for it. Shard 0 repeats a key.
  await writeFile(join(root, 'wds', '0.tar'), await tarShard(['a', 'b', 'a', 'c'].flatMap((k, i) => sampleMembers(k, 'png', png(i)))));
  await writeFile(join(root, 'wds', '2.tar'), await tarShard(['d', 'e'].flatMap((k, i) => sampleMembers(k, 'png', png(i)))));
  await mkdir(join(root, 'pq'));
  const imageFile = (keys: string[]) =>
    parquetBytes(
      [
        { name: 'key', data: keys, type: 'STRING' },
        { name: 'jpg', data: keys.map((_, i) => new Uint8Array(png(i))), type: 'BYTE_ARRAY' },
      ],
      2,
    );
  await writeFile(join(root, 'pq', 'img-0.parquet'), imageFile(['k0', 'k1', 'k1', 'k2']));
  await writeFile(join(root, 'pq', 'img-1.parquet'), imageFile(['k0', 'k3']));
  // URL files: the second repeats one of the first's refs, dropped across files.
  await writeFile(join(root, 'pq', 'url-0.parquet'), parquetBytes([{ name: 'url', data: ['x.png', 'y.png', 'x.png'], type: 'STRING' }]));
  await writeFile(join(root, 'pq', 'url-1.parquet'), parquetBytes([{ name: 'url', data: ['z.png', 'y.png', 'w.png'], type: 'STRING' }]));
});

afterAll(async () => {
  await stores.close();
  await rm(root, { recursive: true, force: true });
});

describe('shard cursors', () => {
  it('tar shards resume after any sample, a missing shard included; repeats within a shard are counted once', async () => {
    const all = await expectResumesEverywhere(join(root, 'wds', '{0..2}.tar'));
    const shard = (i: number) => join(root, 'wds', `${i}.tar`);
    expect(all.inputs.map((i) => i.ref)).toEqual([`${shard(0)}#a`, `${shard(0)}#b`, `${shard(0)}#c`, `${shard(1)}#@0`, `${shard(2)}#d`, `${shard(2)}#e`]);
    expect(all.duplicates).toBe(1);
    expect(all.cursors[2]).toEqual({ kind: 'shard', shard: 0, name: shard(0), sample: 3 });
    expect(all.cursors[4]).toEqual({ kind: 'shard', shard: 2, name: shard(2), sample: 1 });
    // A shard's start (where a batch cut at a new shard stands): the shards before it are not read, even when gone.
    const fromStart = await collect(join(root, 'wds', '{0..2}.tar').replace('{0..2}', '{9,1,2}'), { kind: 'shard', shard: 2, name: shard(2), sample: 0 });
    expect(fromStart.inputs.map((i) => i.ref)).toEqual([`${shard(2)}#d`, `${shard(2)}#e`]);
    // The place in the shard travels with each sample: the rest read from a cursor is the same.
    expect(all.inputs[4]!.at).toMatchObject({ offset: expect.any(Number), length: expect.any(Number) });
  });

  it('Parquet image columns resume after any row, in a later row group or file', async () => {
    const all = await expectResumesEverywhere(join(root, 'pq', 'img-*.parquet'));
    expect(all.inputs.map((i) => i.ref.slice(join(root, 'pq').length + 1))).toEqual([
      'img-0.parquet#k0',
      'img-0.parquet#k1',
      'img-0.parquet#k2',
      'img-1.parquet#k0',
      'img-1.parquet#k3',
    ]);
    expect(all.inputs[2]!.at).toEqual({ row: 3, column: 'jpg' });
    expect(all.duplicates).toBe(1);
  });

  it('Parquet URL columns drop repeats across files, also when the listing resumes in a later file', async () => {
    const all = await expectResumesEverywhere(join(root, 'pq', 'url-*.parquet'));
    expect(all.inputs.map((i) => i.ref.slice(join(root, 'pq').length + 1))).toEqual(['x.png', 'y.png', 'z.png', 'w.png']);
    expect(all.duplicates).toBe(2);
    // Resumed after z.png: y.png was listed by the first file, so it is dropped, and counted now.
    const rest = await collect(join(root, 'pq', 'url-*.parquet'), all.cursors[2]!);
    expect([rest.inputs.map((i) => i.ref.slice(join(root, 'pq').length + 1)), rest.duplicates]).toEqual([['w.png'], 1]);
  });

  it('refuses a cursor whose shard list or shard changed, and a cursor of another kind', async () => {
    const source = join(root, 'wds', '{0..2}.tar');
    const name = join(root, 'wds', '2.tar');
    await expect(collect(source, { kind: 'shard', shard: 2, name: join(root, 'wds', '9.tar'), sample: 1 })).rejects.toThrow(
      /shard 2 is now .*2\.tar, not .*9\.tar .*its shard list changed/,
    );
    await expect(collect(source, { kind: 'shard', shard: 2, name, sample: 5 })).rejects.toThrow(/now holds 2 inputs, fewer than the 5 already listed/);
    await expect(collect(source, { kind: 'shard', shard: 7, name, sample: 1 })).rejects.toThrow(/now names 3 shards/);
    await expect(collect(source, { kind: 'key-list', line: 2 })).rejects.toThrow(/sharded but its stored listing cursor is of kind key-list/);
  });
});
