/** makeDir (pipeline/storage/make-dir.ts) on real filesystems: nested folders, an existing one, a file in the way, and /proc, where Node's recursive mkdir never returns. */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDir } from '../../pipeline/storage/make-dir.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-make-dir-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeDir', () => {
  it('makes missing parents, and is done when the folder exists', async () => {
    await makeDir(join(dir, 'a', 'b', 'c'));
    expect((await stat(join(dir, 'a', 'b', 'c'))).isDirectory()).toBe(true);
    await makeDir(join(dir, 'a', 'b', 'c'));
    await makeDir(join(dir, 'a'));
  });

  it('a file in the way: ENOTDIR', async () => {
    await writeFile(join(dir, 'file'), 'x');
    await expect(makeDir(join(dir, 'file', 'x', 'y'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it.skipIf(!existsSync('/proc/self'))('under /proc: ENOENT at once (the recursive mkdir loops there)', async () => {
    await expect(makeDir('/proc/cascade-no-such/x/y')).rejects.toMatchObject({
      code: 'ENOENT',
      message: 'cannot create the folder /proc/cascade-no-such/x/y: the filesystem refuses a new folder in /proc',
    });
  });
});
