/**
 * Where the benchmarks find the real photos and model specs: `CASCADE_ASSETS`, else
 * `../shared/assets` next to the repository. Absent assets skip a benchmark, never fail it.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The spec files of the default cascade, relative to the repository. */
export const LITTLE_SPEC = join(REPO_ROOT, 'config/models/shufflenet.yaml');
export const BIG_SPEC = join(REPO_ROOT, 'config/models/ensemble.yaml');

/** The assets folder, with CASCADE_ASSETS set for the model specs; null (and why) when absent. */
export function findAssets(): { dir: string } | { missing: string } {
  const dir = resolve(process.env.CASCADE_ASSETS ?? join(REPO_ROOT, '../shared/assets'));
  if (!existsSync(join(dir, 'images')) || !existsSync(join(dir, 'models'))) {
    return { missing: `no real assets at ${dir} (set CASCADE_ASSETS to the folder holding images/ and models/)` };
  }
  process.env.CASCADE_ASSETS = dir;
  return { dir };
}

/** The first `limit` photos of the assets, as absolute paths in name order. */
export async function listPhotos(assetsDir: string, limit = Number.POSITIVE_INFINITY): Promise<string[]> {
  const names = (await readdir(join(assetsDir, 'images'))).filter((n) => /\.jpe?g$/i.test(n)).sort();
  return names.slice(0, limit).map((n) => join(assetsDir, 'images', n));
}
