import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { compareKeys } from '../pipeline/storage/object-store.js';
import { SourceNotFoundError, listSource } from '../producers/list-source.js';
import { type TestS3, startS3 } from './helpers/s3.js';

const EXT = ['.jpg', '.jpeg', '.png'];
let tmp: string;
let s3: TestS3;

async function all(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function touch(root: string, rel: string, body = 'x'): Promise<string> {
  const file = path.join(root, rel);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, body);
  return file;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-list-test-'));
  s3 = await startS3();
});

afterAll(async () => {
  await s3?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('local folders', () => {
  it('walks recursively, filters by extension (any case) and yields absolute paths in key order', async () => {
    const root = path.join(tmp, 'photos');
    const images = ['a.jpg', 'a-b.PNG', 'a/z.jpeg', 'a/b/c.Jpg', 'b.jpg', 'B.jpg', 'é.jpg', 'z/deep/er/x.png'];
    const others = ['notes.txt', 'a/readme', 'a/b/c.jpg.bak', 'noext', 'z/deep/.DS_Store'];
    for (const rel of [...images, ...others]) await touch(root, rel);
    await fs.mkdir(path.join(root, 'empty-dir.jpg'));
    const refs = await all(listSource(root, { extensions: EXT }));
    expect(refs).toEqual([...images].sort(compareKeys).map((rel) => path.join(root, rel)));
    // Deterministic: a second listing is identical.
    expect(await all(listSource(root, { extensions: EXT }))).toEqual(refs);
    // Relative sources come back absolute too; extensions may omit the dot.
    expect(await all(listSource(path.relative(process.cwd(), root), { extensions: ['jpg', 'png', 'jpeg'] }))).toEqual(refs);
  });

  it('follows symlinks but not into cycles, and skips broken ones', async () => {
    const root = path.join(tmp, 'links');
    await touch(root, 'real/one.jpg');
    await fs.symlink(path.join(root, 'real'), path.join(root, 'alias'));
    await fs.symlink(root, path.join(root, 'real', 'loop'));
    await fs.symlink(path.join(root, 'gone.jpg'), path.join(root, 'broken.jpg'));
    const refs = await all(listSource(root, { extensions: EXT }));
    expect(refs).toEqual([path.join(root, 'alias/one.jpg'), path.join(root, 'real/one.jpg')]);
  });

  it('yields a single image file as itself and refuses other files', async () => {
    const img = await touch(tmp, 'single/pic.JPG');
    expect(await all(listSource(img, { extensions: EXT }))).toEqual([img]);
    const other = await touch(tmp, 'single/data.csv');
    await expect(all(listSource(other, { extensions: EXT }))).rejects.toThrow(/neither a key-list file .* nor an image/);
  });

  it('names a missing source', async () => {
    const missing = path.join(tmp, 'no', 'such', 'folder');
    const err = await all(listSource(missing, { extensions: EXT })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotFoundError);
    expect((err as Error).message).toBe(`Source not found: ${missing}`);
    await expect(all(listSource('relative/missing', { extensions: EXT }))).rejects.toThrow(
      `Source not found: relative/missing (${path.resolve('relative/missing')})`,
    );
    await expect(all(listSource('', { extensions: EXT }))).rejects.toThrow(/Empty source/);
    await expect(all(listSource('http://x/y', { extensions: EXT }))).rejects.toThrow(/Unsupported source/);
  });
});

describe('key-list files', () => {
  it('keeps file order, skips blanks and comments, resolves relative lines against the list', async () => {
    const dir = path.join(tmp, 'lists');
    const list = await touch(
      dir,
      'keys.txt',
      [
        '\uFEFF# a comment',
        'z.jpg',
        '',
        '   ',
        'sub/a.png  ',
        '  # indented comment',
        '../up.jpg',
        '/abs/path/x.jpg',
        's3://bucket/key with spaces.jpg',
        'file:///tmp/from-url.jpg',
        'no-extension-filter.bin',
      ].join('\r\n'),
    );
    expect(await all(listSource(list, { extensions: EXT }))).toEqual([
      path.join(dir, 'z.jpg'),
      path.join(dir, 'sub/a.png'),
      path.join(tmp, 'up.jpg'),
      '/abs/path/x.jpg',
      's3://bucket/key with spaces.jpg',
      '/tmp/from-url.jpg',
      path.join(dir, 'no-extension-filter.bin'),
    ]);
  });

  it('recognises .lst/.list, and any file with asList', async () => {
    const dir = path.join(tmp, 'lists2');
    for (const name of ['a.lst', 'b.LIST', 'c.dat']) await touch(dir, name, 'one.jpg\n');
    expect(await all(listSource(path.join(dir, 'a.lst'), { extensions: EXT }))).toEqual([path.join(dir, 'one.jpg')]);
    expect(await all(listSource(path.join(dir, 'b.LIST'), { extensions: EXT }))).toEqual([path.join(dir, 'one.jpg')]);
    expect(await all(listSource(path.join(dir, 'c.dat'), { extensions: EXT, asList: true }))).toEqual([path.join(dir, 'one.jpg')]);
  });

  it('reports bad lines with file and line number', async () => {
    const list = await touch(tmp, 'bad/keys.txt', 'ok.jpg\n# fine\nhttps://example.com/a.jpg\n');
    await expect(all(listSource(list, { extensions: EXT }))).rejects.toThrow(`${list}:3: unsupported ref "https://example.com/a.jpg"`);
    const list2 = await touch(tmp, 'bad/keys2.txt', 's3://bucket/prefix/\n');
    await expect(all(listSource(list2, { extensions: EXT }))).rejects.toThrow(`${list2}:1: "s3://bucket/prefix/" is an S3 prefix, not an object`);
    const list3 = await touch(tmp, 'bad/keys3.txt', 's3:///x.jpg\n');
    await expect(all(listSource(list3, { extensions: EXT }))).rejects.toThrow(`${list3}:1: Malformed S3 URL`);
  });

  it('names a missing list file', async () => {
    const missing = path.join(tmp, 'nope.txt');
    await expect(all(listSource(missing, { extensions: EXT }))).rejects.toThrow(`Source not found: ${missing}`);
  });
});

describe('S3 sources', () => {
  const bucket = 'list-test';
  // s3rver takes several ms per upload, so pagination is exercised with small pages rather than
  // S3's 1000-key pages; the code path (continuation tokens) is the same.
  const many = Array.from({ length: 240 }, (_, i) => `many/img${String(i).padStart(5, '0')}.jpg`);

  beforeAll(async () => {
    await s3.createBucket(bucket);
    const extra = ['many/readme.txt', 'many/IMG99999.JPEG', 'many/folder/', 'many2/not-me.jpg', 'lists/keys.txt', 'lists/sub/a.jpg'];
    const keys = [...many, ...extra];
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(
        keys.slice(i, i + 32).map((Key) => {
          const Body = Key === 'lists/keys.txt' ? Buffer.from('# list on S3\nsub/a.jpg\ns3://other-bucket/x.jpg\n/local/abs.jpg\n') : Buffer.from(Key);
          return s3.client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
        }),
      );
    }
  });

  it('lists more than one page of objects, filtered, in S3 order', async () => {
    const send = vi.spyOn(s3.client, 'send');
    try {
      const refs = await all(listSource(`s3://${bucket}/many`, { extensions: EXT, s3: s3.client, pageSize: 25 }));
      const expected = [...many, 'many/IMG99999.JPEG'].sort(compareKeys).map((k) => `s3://${bucket}/${k}`);
      expect(refs).toEqual(expected);
      const listCalls = send.mock.calls.filter(([cmd]) => cmd instanceof ListObjectsV2Command);
      // 243 objects under many/ (the filter runs client-side) → 10 pages.
      expect(listCalls.length).toBe(10);
    } finally {
      send.mockRestore();
    }
  });

  it('lists with the server default page size and builds the client lazily, once', async () => {
    let built = 0;
    const factory = () => {
      built++;
      return s3.client;
    };
    const refs = await all(listSource(`s3://${bucket}/many/`, { extensions: ['.jpg'], s3: factory }));
    expect(refs).toEqual(many.map((k) => `s3://${bucket}/${k}`));
    expect(built).toBe(1);
  });

  it('reads a key-list file stored on S3, resolving relative lines next to it', async () => {
    const refs = await all(listSource(`s3://${bucket}/lists/keys.txt`, { extensions: EXT, s3: s3.client }));
    expect(refs).toEqual([`s3://${bucket}/lists/sub/a.jpg`, 's3://other-bucket/x.jpg', '/local/abs.jpg']);
  });

  it('names missing buckets, empty prefixes and missing list files', async () => {
    await expect(all(listSource('s3://no-such-bucket/x', { extensions: EXT, s3: s3.client }))).rejects.toThrow(
      'Source not found: s3://no-such-bucket/x (bucket "no-such-bucket" does not exist)',
    );
    const err = await all(listSource(`s3://${bucket}/manyy`, { extensions: EXT, s3: s3.client })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotFoundError);
    expect((err as Error).message).toBe(`Source not found: s3://${bucket}/manyy (no objects under s3://${bucket}/manyy/)`);
    await expect(all(listSource(`s3://${bucket}/lists/missing.txt`, { extensions: EXT, s3: s3.client }))).rejects.toThrow(
      `Source not found: s3://${bucket}/lists/missing.txt`,
    );
  });

  it('needs an S3 client for S3 sources', async () => {
    await expect(all(listSource(`s3://${bucket}/many`, { extensions: EXT }))).rejects.toThrow(/no S3 client was configured/);
  });
});
