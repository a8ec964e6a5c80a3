/**
 * Key lists normalised and unique (producers/list-source.ts): trimmed lines, CRLF, blank and
 * comment lines skipped, each ref yielded once with the dropped repeats reported, and the
 * default local roots of a one-process run.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLocalRoots, listSource } from '../../producers/list-source.js';

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cascade-keylist-'));
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function list(name: string, text: string): Promise<string> {
  const file = path.join(tmp, name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

async function listWithRepeats(source: string): Promise<{ refs: string[]; repeats: Array<[string, string]> }> {
  const refs: string[] = [];
  const repeats: Array<[string, string]> = [];
  for await (const ref of listSource(source, { extensions: ['.jpg'], onDuplicate: (dup, where) => repeats.push([dup, where]) })) refs.push(ref);
  return { refs, repeats };
}

describe('key lists: normalised and unique', () => {
  it('one ref per key, whatever the spelling; repeats reported with their line', async () => {
    const file = await list(
      'k/keys.txt',
      `${[
        '# the same image, six ways',
        'a.jpg',
        'a.jpg',
        '  a.jpg',
        'a.jpg\t ',
        './a.jpg',
        'sub/../a.jpg',
        `${tmp}/k//a.jpg`,
        '',
        '\t',
        '# s3 refs: scheme case folds, keys are data',
        's3://bucket/x.jpg',
        'S3://bucket/x.jpg',
        's3://bucket/X.jpg',
        's3://bucket//x.jpg',
        'b.jpg',
      ].join('\r\n')}\r\n`,
    );
    const { refs, repeats } = await listWithRepeats(file);
    const a = path.join(tmp, 'k', 'a.jpg');
    expect(refs).toEqual([a, 's3://bucket/x.jpg', 's3://bucket/X.jpg', 's3://bucket//x.jpg', path.join(tmp, 'k', 'b.jpg')]);
    expect(repeats).toEqual([
      [a, `${file}:3`],
      [a, `${file}:4`],
      [a, `${file}:5`],
      [a, `${file}:6`],
      [a, `${file}:7`],
      [a, `${file}:8`],
      ['s3://bucket/x.jpg', `${file}:13`],
    ]);
    // No carriage return, no whitespace survives into a ref.
    for (const r of refs) expect(r).toBe(r.trim());
  });

  it('paths that leave the folder are listed normalised (reading them is refused later), S3 .. keys too', async () => {
    const file = await list(
      'k2/keys.lst',
      ['../../etc/passwd', '/etc/../etc/shadow', '/etc/shadow', 's3://bucket/../x.jpg', 's3://bucket/../x.jpg'].join('\n'),
    );
    const { refs, repeats } = await listWithRepeats(file);
    expect(refs).toEqual([path.resolve(tmp, '..', 'etc', 'passwd'), '/etc/shadow', 's3://bucket/../x.jpg']);
    expect(repeats.map(([, where]) => where)).toEqual([`${file}:3`, `${file}:5`]);
  });

  it('a folder listing has nothing to drop', async () => {
    await list('f/one.jpg', '1');
    await list('f/sub/two.jpg', '2');
    const { refs, repeats } = await listWithRepeats(path.join(tmp, 'f'));
    expect(refs).toEqual([path.join(tmp, 'f', 'one.jpg'), path.join(tmp, 'f', 'sub', 'two.jpg')]);
    expect(repeats).toEqual([]);
  });
});

describe('defaultLocalRoots', () => {
  it('the folder, the key list’s folder, the image itself; none for S3', () => {
    expect(defaultLocalRoots('/data/images')).toEqual(['/data/images']);
    expect(defaultLocalRoots('/data/images/')).toEqual(['/data/images']);
    expect(defaultLocalRoots('/data/lists/keys.txt')).toEqual(['/data/lists']);
    expect(defaultLocalRoots('/data/lists/keys.LST')).toEqual(['/data/lists']);
    expect(defaultLocalRoots('/data/lists/keys.dat', { asList: true })).toEqual(['/data/lists']);
    expect(defaultLocalRoots('/data/one.jpg')).toEqual(['/data/one.jpg']);
    expect(defaultLocalRoots('imgs', { cwd: '/srv' })).toEqual(['/srv/imgs']);
    expect(defaultLocalRoots('../shared/assets/images', { cwd: '/srv/cascade' })).toEqual(['/srv/shared/assets/images']);
    expect(defaultLocalRoots('file:///data/keys.txt')).toEqual(['/data']);
    expect(defaultLocalRoots('s3://bucket/prefix/')).toEqual([]);
    expect(defaultLocalRoots('s3://bucket/lists/keys.txt')).toEqual([]);
    expect(defaultLocalRoots('')).toEqual([]);
  });
});
