/** Listing local folders and key-list files: order, extension filter, symlinks, line errors (S3 sources: integration/list-source-s3.test.ts). */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { SourceNotFoundError, defaultLocalRoots, listSource } from '../../producers/list-source.js';

const EXT = ['.jpg', '.jpeg', '.png'];
let tmp: string;

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
});

afterAll(async () => {
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

describe('Ground Truth manifests (.manifest)', () => {
  it('lists each line’s source-ref in file order: other fields ignored, blank lines skipped, repeats dropped and reported', async () => {
    const dir = path.join(tmp, 'gt');
    const manifest = await touch(
      dir,
      'input.manifest',
      [
        '\uFEFF{"source-ref": "s3://bucket/a.jpg"}',
        '',
        '{"source-ref":"s3://bucket/b c.jpg","sport":0,"sport-metadata":{"class-name":"football","human-annotated":"yes"}}',
        '  {"source-ref": "local/x.png"}  ',
        '{"source-ref": "s3://bucket/a.jpg", "note": "again"}',
      ].join('\r\n'),
    );
    const repeats: string[] = [];
    const refs = await all(listSource(manifest, { extensions: EXT, onDuplicate: (ref, where) => repeats.push(`${where} ${ref}`) }));
    expect(refs).toEqual(['s3://bucket/a.jpg', 's3://bucket/b c.jpg', path.join(dir, 'local/x.png')]);
    expect(repeats).toEqual([`${manifest}:5 s3://bucket/a.jpg`]);
  });

  it('a line that is not a JSON object with a string source-ref is an error naming file and line, never a dropped line', async () => {
    const cases: Array<[string, string]> = [
      ['# a comment', 'not a JSON object (Unexpected token'],
      ['s3://bucket/a.jpg', 'not a JSON object (Unexpected token'],
      ['{"source-ref": "s3://bucket/a.jpg"', 'not a JSON object ('],
      ['["s3://bucket/a.jpg"]', 'not a JSON object'],
      ['null', 'not a JSON object'],
      ['{"source-ref": 7}', '"source-ref" is not a non-empty string'],
      ['{"source-ref": "  "}', '"source-ref" is not a non-empty string'],
      ['{"source": "a sentence to label"}', 'a text object ("source"), not an image ("source-ref")'],
      ['{"image": "s3://bucket/a.jpg"}', 'no "source-ref"'],
      ['{"source-ref": "https://example.com/a.jpg"}', 'unsupported ref "https://example.com/a.jpg"'],
      ['{"source-ref": "s3://bucket/prefix/"}', '"s3://bucket/prefix/" is an S3 prefix, not an object'],
    ];
    for (const [i, [line, message]] of cases.entries()) {
      const manifest = await touch(tmp, `gt-bad/${i}.manifest`, `{"source-ref": "s3://bucket/ok.jpg"}\n${line}\n`);
      const seen: string[] = [];
      const read = async () => {
        for await (const ref of listSource(manifest, { extensions: EXT })) seen.push(ref);
      };
      await expect(read(), line).rejects.toThrow(`${manifest}:2: ${message}`);
      expect(seen).toEqual(['s3://bucket/ok.jpg']);
    }
  });

  it('is recognised by its extension in any case; its folder is the default local root', async () => {
    const manifest = await touch(tmp, 'gt-case/Data.MANIFEST', '{"source-ref": "one.jpg"}\n');
    expect(await all(listSource(manifest, { extensions: EXT }))).toEqual([path.join(tmp, 'gt-case/one.jpg')]);
    expect(defaultLocalRoots(manifest)).toEqual([path.join(tmp, 'gt-case')]);
  });
});
