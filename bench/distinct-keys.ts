/**
 * N distinct image keys at almost no disk cost: hard links (in folders of 1,000) to a few tiny
 * PNGs, and a key list naming them. Key lists fold repeats, so the scale benchmarks need
 * distinct refs to make N fetches, decodes and rows.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { link, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

const DISTINCT = 64;
const PER_FOLDER = 1000;

/** Writes `n` distinct paths under `dir` (hard links to 64 32×32 PNGs of varied colour); returns the key list's path. */
export async function distinctKeys(dir: string, n: number): Promise<string> {
  await mkdir(dir, { recursive: true });
  const originals: string[] = [];
  for (let i = 0; i < DISTINCT; i++) {
    const v = (i * 37) % 256;
    const file = join(dir, `img-${i}.png`);
    const background = { r: v, g: (v * 3) % 256, b: i % 2 ? 255 - v : v };
    await writeFile(
      file,
      await sharp({ create: { width: 32, height: 32, channels: 3, background } })
        .png()
        .toBuffer(),
    );
    originals.push(file);
  }
  const list = join(dir, 'refs.txt');
  const out = createWriteStream(list);
  for (let start = 0; start < n; start += PER_FOLDER) {
    const folder = join(dir, String(start / PER_FOLDER).padStart(5, '0'));
    await mkdir(folder);
    const paths = Array.from({ length: Math.min(PER_FOLDER, n - start) }, (_, j) => join(folder, `k${start + j}.png`));
    await Promise.all(paths.map((p, j) => link(originals[(start + j) % DISTINCT]!, p)));
    if (!out.write(`${paths.join('\n')}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return list;
}
