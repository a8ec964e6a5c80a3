/**
 * Local reads confined to `sources.localRoots` (pipeline/storage/local-roots.ts through fetchRef):
 * `..`, absolute paths, symlinks that leave a root, /proc, /dev and devices are ForbiddenPathError
 * before a byte is read; S3 URLs with `..` segments never reach a client. (FIFOs, which need
 * mkfifo, are in test/integration/hostile-key-list.test.ts.)
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load-config.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { ForbiddenPathError, fetchRef, isForbiddenPath } from '../../pipeline/storage/fetch-image.js';
import { isWithin, readConfinedFile } from '../../pipeline/storage/local-roots.js';
import { ObjectNotFoundError, ObjectTooLargeError } from '../../pipeline/storage/object-store.js';
import { Stores } from '../../pipeline/storage/stores.js';

let dir: string;
let root: string;
// No remote rows: a remote ref that got past its checks would fail here instead of reaching a client.
const noS3 = new Stores({}, { schemes: [] });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-roots-'));
  root = join(dir, 'root');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(join(dir, 'outside'));
  await writeFile(join(root, 'a.jpg'), 'image-a');
  await writeFile(join(root, 'sub', 'b.jpg'), 'image-b');
  await writeFile(join(dir, 'outside', 'secret.jpg'), 'secret');
  await writeFile(join(dir, 'root-sibling.jpg'), 'sibling');
  await symlink(join(dir, 'outside', 'secret.jpg'), join(root, 'escape.jpg'));
  await symlink('/etc/passwd', join(root, 'passwd.jpg'));
  await symlink(join(dir, 'outside'), join(root, 'outdir'));
  await symlink('a.jpg', join(root, 'alias.jpg'));
  await symlink(join(root, 'sub'), join(dir, 'rootlink'));
  await symlink('loop.jpg', join(root, 'loop.jpg'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function outcome(ref: string, roots: readonly string[] | undefined): Promise<string> {
  try {
    return `ok:${(await fetchRef(ref, noS3, { localRoots: roots })).toString()}`;
  } catch (err) {
    if (isForbiddenPath(err)) return 'forbidden';
    if (err instanceof ObjectNotFoundError) return 'not-found';
    throw err;
  }
}

describe('local roots', () => {
  it('reads files below a root, through symlinks that stay inside', async () => {
    expect(await outcome(join(root, 'a.jpg'), [root])).toBe('ok:image-a');
    expect(await outcome(join(root, 'sub', 'b.jpg'), [root])).toBe('ok:image-b');
    expect(await outcome(join(root, 'sub', '..', 'a.jpg'), [root])).toBe('ok:image-a');
    expect(await outcome(join(root, 'alias.jpg'), [root])).toBe('ok:image-a');
    expect(await outcome(`file://${join(root, 'a.jpg')}`, [root])).toBe('ok:image-a');
    // A root given through a symlink, and a file named through that symlink.
    expect(await outcome(join(dir, 'rootlink', 'b.jpg'), [join(dir, 'rootlink')])).toBe('ok:image-b');
    expect(await outcome(join(root, 'sub', 'b.jpg'), [join(dir, 'rootlink')])).toBe('ok:image-b');
    // A root may be a single file.
    expect(await outcome(join(root, 'a.jpg'), [join(root, 'a.jpg')])).toBe('ok:image-a');
    expect(await outcome(join(root, 'sub', 'b.jpg'), [join(root, 'a.jpg')])).toBe('forbidden');
  });

  it('refuses paths that leave the roots, by .., absolute path or symlink', async () => {
    for (const ref of [
      join(root, '..', 'outside', 'secret.jpg'),
      `${root}/../outside/secret.jpg`,
      `${root}/sub/../../root-sibling.jpg`,
      // Shares the root's name as a string prefix, not as a folder.
      `${root}-sibling.jpg`,
      '/etc/shadow',
      '/etc/passwd',
      '/proc/self/environ',
      '/dev/zero',
      join(root, 'escape.jpg'),
      join(root, 'passwd.jpg'),
      join(root, 'outdir', 'secret.jpg'),
      join(root, 'loop.jpg'),
    ]) {
      expect(await outcome(ref, [root]), ref).toBe('forbidden');
    }
    // Nothing outside exists for a reader, even a missing file: no existence oracle.
    expect(await outcome('/etc/no-such-file', [root])).toBe('forbidden');
    // Inside a root, a missing file is just missing, and a directory is not an image.
    expect(await outcome(join(root, 'missing.jpg'), [root])).toBe('not-found');
    expect(await outcome(join(root, 'sub'), [root])).toBe('not-found');
  });

  it('no roots: nothing local; absent roots: anything but special files', async () => {
    await expect(fetchRef(join(root, 'a.jpg'), noS3, { localRoots: [] })).rejects.toThrow(/reads no local files/);
    expect(await outcome(join(root, 'a.jpg'), undefined)).toBe('ok:image-a');
    expect(await outcome(join(root, 'escape.jpg'), undefined)).toBe('ok:secret');
    for (const ref of ['/dev/zero', '/dev/null', '/proc/self/environ', '/proc/self/mem', '/sys']) expect(await outcome(ref, undefined), ref).toBe('forbidden');
    // Roots that name /dev or / still never open a device or a pseudo-file.
    expect(await outcome('/dev/zero', ['/dev'])).toBe('forbidden');
    expect(await outcome('/proc/self/environ', ['/'])).toBe('forbidden');
  });

  it('names the reason and keeps the size limit', async () => {
    const err = await fetchRef(join(root, 'escape.jpg'), noS3, { localRoots: [root] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForbiddenPathError);
    expect(err).toMatchObject({ code: 'FORBIDDEN_PATH', message: expect.stringMatching(/resolves to .*secret\.jpg, outside the configured local roots/) });
    await expect(fetchRef('/dev/zero', noS3, { localRoots: ['/dev'] })).rejects.toThrow(/under \/dev/);
    await expect(readConfinedFile(join(root, 'a.jpg'), { roots: [root], maxBytes: 3 })).rejects.toBeInstanceOf(ObjectTooLargeError);
    expect((await readConfinedFile(join(root, 'a.jpg'), { roots: [root], maxBytes: 7 })).toString()).toBe('image-a');
  });

  it("refuses S3 URLs with '.' or '..' key segments before building a client", async () => {
    for (const ref of ['s3://bucket/../x.jpg', 's3://bucket/a/../../etc/x.jpg', 's3://bucket//../x.jpg', 's3://bucket/a/./x.jpg']) {
      await expect(fetchRef(ref, noS3), ref).rejects.toBeInstanceOf(ForbiddenPathError);
    }
  });

  it('isWithin compares whole segments', () => {
    expect(isWithin('/a/b', '/a')).toBe(true);
    expect(isWithin('/a', '/a')).toBe(true);
    expect(isWithin('/ab', '/a')).toBe(false);
    expect(isWithin('/a/..b', '/a')).toBe(true);
    expect(isWithin('/', '/a')).toBe(false);
    expect(isWithin('/anything', '/')).toBe(true);
  });
});

describe('sources.localRoots in the config', () => {
  it('resolve against the config file; absent: unset for a run, none for a worker', async () => {
    const file = join(dir, 'conf', 'cascade.json');
    await mkdir(join(dir, 'conf'), { recursive: true });
    await writeFile(file, JSON.stringify({ little: 'l.onnx', big: 'b.onnx', sources: { localRoots: ['imgs', '/data/abs', '${IMG_ROOT}/x'] } }));
    const env = { IMG_ROOT: '/mnt' };
    expect((await loadConfig({ file, env })).sources.localRoots).toEqual([join(dir, 'conf', 'imgs'), '/data/abs', '/mnt/x']);
    expect((await loadWorkerConfig({ file, env })).config.sources.localRoots).toEqual([join(dir, 'conf', 'imgs'), '/data/abs', '/mnt/x']);
    const bare = join(dir, 'conf', 'bare.json');
    await writeFile(bare, JSON.stringify({ little: 'l.onnx', big: 'b.onnx' }));
    expect((await loadConfig({ file: bare, env })).sources.localRoots).toBeUndefined();
    expect((await loadWorkerConfig({ file: bare, env })).config.sources.localRoots).toEqual([]);
    await writeFile(bare, JSON.stringify({ sources: { localRoots: [''] } }));
    await expect(loadWorkerConfig({ file: bare, env })).rejects.toThrow(/sources\.localRoots/);
    await writeFile(bare, JSON.stringify({ sources: { roots: ['/x'] } }));
    await expect(loadWorkerConfig({ file: bare, env })).rejects.toThrow(/roots/);
  });
});
