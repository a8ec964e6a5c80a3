/**
 * The pure and local-file parts of sharded inputs: brace and glob shard names, WebDataset member
 * names and samples (tar-stream over generated tars), the input-format table, and ranged reads of
 * local shards under the local roots and byte limit.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostileName, splitMemberName, tarSamples } from '../../pipeline/inputs/tar-samples.js';
import { shardOf } from '../../pipeline/inputs/sample-locator.js';
import { fetchRange } from '../../pipeline/storage/fetch-image.js';
import { isForbiddenPath } from '../../pipeline/storage/local-roots.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { isObjectTooLarge, isObjectTruncated } from '../../pipeline/storage/object-store.js';
import { shardExtension, shardRoots } from '../../producers/inputs/input-format.js';
import { inputFormatOf } from '../../producers/inputs/input-formats.js';
import { expandBraces, MAX_BRACE_SHARDS, shardNames } from '../../producers/inputs/shard-names.js';
import { tarShard } from '../helpers/shard-fixture.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-shard-unit-'));
  for (const name of ['b.tar', 'a.tar', 'a.txt', 'c.tar']) await writeFile(join(dir, name), '');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const collect = async <T>(it: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
};

describe('shard names', () => {
  it('expands numeric ranges with their padding, lists, and several braces in order', () => {
    expect([...expandBraces('s/{000008..000011}.tar')]).toEqual(['s/000008.tar', 's/000009.tar', 's/000010.tar', 's/000011.tar']);
    expect([...expandBraces('{2..0}.tar')]).toEqual(['2.tar', '1.tar', '0.tar']);
    expect([...expandBraces('{a,b}/{0..1}.tar')]).toEqual(['a/0.tar', 'a/1.tar', 'b/0.tar', 'b/1.tar']);
    expect(() => [...expandBraces('{x}.tar')]).toThrow(/neither a range/);
    expect(() => [...expandBraces(`{0..${MAX_BRACE_SHARDS}}.tar`)]).toThrow(/more than/);
  });

  it('matches a glob in the file name against the folder, in byte order; refuses a glob in a folder', async () => {
    expect(await collect(shardNames(join(dir, '*.tar')))).toEqual(['a.tar', 'b.tar', 'c.tar'].map((n) => join(dir, n)));
    expect(await collect(shardNames(join(dir, '?.tar')))).toHaveLength(3);
    await expect(collect(shardNames(join(dir, '*.parquet')))).rejects.toThrow(/no file matches/);
    await expect(collect(shardNames(join(dir, '*', 'x.tar')))).rejects.toThrow(/only appear in the file name/);
  });

  it('picks the format by the (expanded) extension; roots are the folder above the pattern', () => {
    expect(shardExtension('s/{000000..000009}.tar')).toBe('.tar');
    expect(shardExtension('s3://b/x/{a,b}.parquet')).toBe('.parquet');
    expect(inputFormatOf('s/{000000..000009}.tar').name).toBe('webdataset');
    expect(inputFormatOf('data/*.parquet').name).toBe('parquet');
    expect(inputFormatOf('photos/').name).toBe('loose');
    expect(inputFormatOf('keys.txt').name).toBe('loose');
    expect(shardRoots('/data/shards/{0..9}.tar')).toEqual(['/data/shards']);
    expect(shardRoots('/data/x.parquet')).toEqual(['/data']);
    expect(shardRoots('s3://bkt/x.parquet')).toEqual([]);
  });
});

describe('WebDataset members', () => {
  it('splits names at the first dot of the file name, and names hostile ones', () => {
    expect(splitMemberName('a/b.seg.JPG')).toEqual({ key: 'a/b', field: 'seg.jpg' });
    expect(splitMemberName('x.y/noext')).toEqual({ key: 'x.y/noext', field: '' });
    expect(hostileName('a/../b.jpg')).toMatch(/'\.\.'/);
    expect(hostileName('/etc/x.jpg')).toMatch(/absolute/);
    expect(hostileName('C:/x.jpg')).toMatch(/absolute/);
    expect(hostileName('a\\b.jpg')).toMatch(/backslash/);
    expect(hostileName('a/b..c.jpg')).toBeNull();
    expect(shardOf('/s/0.tar#a#b')).toBe('/s/0.tar');
    expect(() => shardOf('#a')).toThrow(/not a shard sample ref/);
  });

  it('groups consecutive members into samples with the image member located, whatever the other fields', async () => {
    const tar = await tarShard([
      { name: 'k1.json', body: '{}' },
      { name: 'k1.webp', body: 'WEBP' },
      { name: 'dir/k2.PNG', body: 'PNG!' },
      { name: 'dir/k2.txt', body: 'caption' },
      { name: 'k3.txt', body: 'no image' },
    ]);
    const samples = await collect(tarSamples(Readable.from([tar]), 'S'));
    expect(samples.map((s) => s.key)).toEqual(['k1', 'dir/k2', 'k3']);
    const bytes = samples.slice(0, 2).map((s) => ('offset' in s.at ? tar.subarray(s.at.offset, s.at.offset + s.at.length).toString() : null));
    expect(bytes).toEqual(['WEBP', 'PNG!']);
    expect(samples[2]!.at).toEqual({ unreadable: { kind: 'decode', message: expect.stringMatching(/no image member/) } });
  });
});

describe('ranged reads of a local shard', () => {
  it('reads exactly the range, refuses it over maxBytes or outside the roots before reading, and names a truncation', async () => {
    // A Stores that never connects: every read here is local.
    const local = new Stores();
    const file = join(dir, 'r.bin');
    await writeFile(file, Buffer.from('0123456789'));
    expect((await fetchRange(file, { offset: 3, length: 4 }, local, { localRoots: [dir] })).toString()).toBe('3456');
    await expect(fetchRange(file, { offset: 0, length: 5 }, local, { localRoots: [dir], maxBytes: 4 })).rejects.toSatisfy(isObjectTooLarge);
    await expect(fetchRange(file, { offset: 0, length: 5 }, local, { localRoots: ['/nowhere'], maxBytes: 4 })).rejects.toSatisfy(isForbiddenPath);
    await expect(fetchRange(file, { offset: 8, length: 4 }, local, { localRoots: [dir] })).rejects.toSatisfy(isObjectTruncated);
    await expect(fetchRange(file, { offset: 8, length: 4 }, local, { localRoots: [dir] })).rejects.toThrow(/ends at byte 10/);
  });
});
