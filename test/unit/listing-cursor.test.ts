/**
 * Resumable listing (producers/listing-cursor.ts, list-source.ts listSourceFrom): listing again
 * from the cursor yielded with any ref gives exactly the refs after it, for every kind of local
 * source; repeats dropped before and after the cursor add up to the whole list's. (S3 prefixes:
 * integration/list-source-s3.test.ts, on s3rver.)
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSourceFrom } from '../../producers/list-source.js';
import { type ListingCursor, parseCursor } from '../../producers/listing-cursor.js';

let root: string;
const EXT = ['.png', '.jpg'];

async function collect(source: string, cursor: ListingCursor | null): Promise<{ refs: string[]; cursors: ListingCursor[]; duplicates: number }> {
  const refs: string[] = [];
  const cursors: ListingCursor[] = [];
  let duplicates = 0;
  for await (const item of listSourceFrom(source, { extensions: EXT, onDuplicate: () => void duplicates++ }, cursor)) {
    refs.push(item.ref);
    cursors.push(item.cursor);
  }
  return { refs, cursors, duplicates };
}

/** From every cursor the whole listing yields, the rest of it; returns the whole listing. */
async function expectResumesEverywhere(source: string): Promise<string[]> {
  const all = await collect(source, null);
  for (const [i, cursor] of all.cursors.entries()) {
    // The stored form: JSON in Redis, read back through the schema.
    const rest = await collect(source, parseCursor(JSON.stringify(cursor)));
    expect(rest.refs, `after ${JSON.stringify(cursor)}`).toEqual(all.refs.slice(i + 1));
  }
  return all.refs;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cascade-cursor-'));
  const files = ['tree/a/1.png', 'tree/a/b/2.png', 'tree/a/b/3.jpg', 'tree/a/notes.txt', 'tree/a0.png', 'tree/c.png', 'tree/z/y/x.png', 'tree/é.png'];
  for (const f of files) {
    await mkdir(join(root, f, '..'), { recursive: true });
    await writeFile(join(root, f), 'x');
  }
  await mkdir(join(root, 'tree/empty'));
  await writeFile(join(root, 'keys.txt'), ['a.png', 'b.png', 'a.png', '# c', '', 'c.png', './b.png', 'd.png', 'd.png'].join('\n'));
  await writeFile(
    join(root, 'gt.manifest'),
    ['{"source-ref":"s3://bkt/1.jpg"}', '{"source-ref":"s3://bkt/1.jpg"}', '{"source-ref":"s3://bkt/2.jpg"}'].join('\n'),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('listing cursors', () => {
  it('a folder resumes after the last file listed, in byte order, subtrees before it unread', async () => {
    const refs = await expectResumesEverywhere(join(root, 'tree'));
    expect(refs.map((r) => r.slice(root.length + 6))).toEqual(['a/1.png', 'a/b/2.png', 'a/b/3.jpg', 'a0.png', 'c.png', 'z/y/x.png', 'é.png']);
    // A cursor whose file was deleted since still resumes at its place in the order.
    expect((await collect(join(root, 'tree'), { kind: 'folder', after: 'a/b/2.png~' })).refs.map((r) => r.slice(root.length + 6))).toEqual([
      'a/b/3.jpg',
      'a0.png',
      'c.png',
      'z/y/x.png',
      'é.png',
    ]);
  });

  it('a key list resumes after its line, dropping repeats of refs listed before the cursor and counting only the later ones', async () => {
    const all = await collect(join(root, 'keys.txt'), null);
    expect(all.refs.map((r) => r.slice(root.length + 1))).toEqual(['a.png', 'b.png', 'c.png', 'd.png']);
    expect(all.duplicates).toBe(3);
    await expectResumesEverywhere(join(root, 'keys.txt'));
    // After b.png (line 2): the repeat of a.png (line 3) is still dropped; it and the two later ones are counted.
    const rest = await collect(join(root, 'keys.txt'), all.cursors[1]!);
    expect(all.cursors[1]).toEqual({ kind: 'key-list', line: 2 });
    expect([rest.refs.length, rest.duplicates]).toEqual([2, 3]);
    // After c.png (line 6): only ./b.png (7) and the second d.png (9) are repeats still to come.
    expect((await collect(join(root, 'keys.txt'), all.cursors[2]!)).duplicates).toBe(2);
  });

  it('a Ground Truth manifest and a single image resume too', async () => {
    expect(await expectResumesEverywhere(join(root, 'gt.manifest'))).toEqual(['s3://bkt/1.jpg', 's3://bkt/2.jpg']);
    expect(await expectResumesEverywhere(join(root, 'tree/c.png'))).toEqual([join(root, 'tree/c.png')]);
  });

  it('refuses a cursor of another kind of source, and a stored cursor this version cannot read', async () => {
    await expect(collect(join(root, 'tree'), { kind: 'key-list', line: 3 })).rejects.toThrow(
      /lists as folder, but the run's stored listing cursor is a key-list cursor/,
    );
    expect(() => parseCursor('{"kind":"shard","index":3}')).toThrow(/is not one this version reads/);
    expect(parseCursor(null)).toBeNull();
  });
});
