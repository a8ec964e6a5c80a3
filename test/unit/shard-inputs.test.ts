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
import { classIndex, MAX_LABEL_MEMBER_BYTES } from '../../pipeline/inputs/sample-label.js';
import { relativeName } from '../../pipeline/calibration/tables.js';
import { fetchRange } from '../../pipeline/storage/fetch-image.js';
import { isForbiddenPath } from '../../pipeline/storage/local-roots.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { isObjectTooLarge, isObjectTruncated } from '../../pipeline/storage/object-store.js';
import { shardExtension, shardRoots } from '../../producers/inputs/input-format.js';
import { inputFormatOf } from '../../producers/inputs/input-formats.js';
import { expandBraces, MAX_BRACE_SHARDS, namedShardCount, shardNames } from '../../producers/inputs/shard-names.js';
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

  it('counts the shards a source names without expanding it, and not a glob', () => {
    expect(namedShardCount('s/{000000..001999}.tar')).toBe(2000);
    expect(namedShardCount('{a,b,c}/{2..0}.tar')).toBe(9);
    expect(namedShardCount('s/one.tar')).toBe(1);
    expect(namedShardCount(`{0..${MAX_BRACE_SHARDS - 1}}/{0..${MAX_BRACE_SHARDS - 1}}.tar`)).toBe(MAX_BRACE_SHARDS ** 2);
    expect(namedShardCount('s3://b/{a,b}/*.tar')).toBeNull();
    expect(() => namedShardCount('{x}.tar')).toThrow(/neither a range/);
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
    // A run's listing reads no label.
    expect(samples.some((x) => 'label' in x)).toBe(false);
  });

  it('asked for labels: .cls wins over .json (label or cls field); missing, invalid and oversized labels say why; members still located', async () => {
    const tar = await tarShard([
      { name: 'a.cls', body: ' 7\n' },
      { name: 'a.json', body: '{"label": 3}' },
      { name: 'a.jpg', body: 'A' },
      { name: 'b.jpg', body: 'B' },
      { name: 'b.json', body: '{"cls": 2}' },
      { name: 'c.jpg', body: 'C' },
      { name: 'd.jpg', body: 'D' },
      { name: 'd.cls', body: 'cat' },
      { name: 'e.jpg', body: 'E' },
      { name: 'e.json', body: '{"caption": "x"}' },
      { name: 'f.cls', body: '1'.repeat(MAX_LABEL_MEMBER_BYTES + 1) },
      { name: 'f.jpg', body: 'F' },
      { name: 'g.cls', body: '-1' },
      { name: 'g.png', body: 'G' },
      { name: 'h.cls', body: '0' },
    ]);
    const samples = await collect(tarSamples(Readable.from([tar]), 'S', { labels: true }));
    expect(samples.map((x) => [x.key, x.label])).toEqual([
      ['a', { class: 7 }],
      ['b', { class: 2 }],
      ['c', { missing: 'S#c has no .cls or .json member' }],
      ['d', { invalid: 'S#d.cls: "cat" is not a class index' }],
      ['e', { missing: expect.stringMatching(/no label or cls field/) }],
      ['f', { invalid: expect.stringMatching(/65537 bytes, more than a label's 65536/) }],
      ['g', { invalid: 'S#g.cls: "-1" is not a class index' }],
      // No image: the sample is an error row, its label irrelevant.
      ['h', undefined],
    ]);
    const bytes = samples.slice(0, 7).map((x) => ('offset' in x.at ? tar.subarray(x.at.offset, x.at.offset + x.at.length).toString() : null));
    expect(bytes).toEqual(['A', 'B', 'C', 'D', 'E', 'F', 'G']);
  });

  it("names a shard sample for labels and the split by its shard relative to the pattern's folder", () => {
    expect(relativeName('/d/wds/000001.tar#sub/k', '/d/wds/{000000..000003}.tar')).toBe('000001.tar#sub/k');
    expect(relativeName('/d/wds/x.tar#k', '/d/wds/x.tar')).toBe('x.tar#k');
    expect(relativeName('s3://bkt/pq/part-1.parquet#k', 's3://bkt/pq/part-*.parquet')).toBe('part-1.parquet#k');
    expect(relativeName('/d/loose/a.png', '/d/urls.parquet')).toBe('loose/a.png');
    expect(classIndex(12n, 'x')).toEqual({ class: 12 });
    expect(classIndex(1.5, 'x')).toEqual({ invalid: 'x: 1.5 is not a class index' });
    expect(classIndex(null, 'x')).toEqual({ missing: 'x has no label' });
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
