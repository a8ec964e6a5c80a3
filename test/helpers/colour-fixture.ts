/**
 * A folder of flat-colour images plus two broken files, for cascades of the generated colour
 * models (test-models.ts) whose every routing decision is known in advance.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

export interface ColourImage {
  name: string;
  rgb: [number, number, number];
}

/** 12 saturated colours (the little model is ≥ 0.996 sure) and 6 greys (≤ 0.72 sure). */
export const COLOURS: ColourImage[] = [
  ...[0, 1, 2, 3, 4].map((i) => ({ name: `red-${i}.png`, rgb: [255, 0, 0] as [number, number, number] })),
  ...[0, 1, 2, 3].map((i) => ({ name: `green-${i}.png`, rgb: [0, 255, 0] as [number, number, number] })),
  ...[0, 1, 2].map((i) => ({ name: `blue-${i}.png`, rgb: [0, 0, 255] as [number, number, number] })),
];
export const GREYS: ColourImage[] = [0, 64, 96, 128, 160, 192].map((v) => ({ name: `grey-${v}.png`, rgb: [v, v, v] as [number, number, number] }));
/** Files that fail to decode. */
export const BROKEN = ['corrupt.jpg', 'empty.png'];

/** Write COLOURS, GREYS and BROKEN into `root`; returns the number of files. */
export async function writeColourImages(root: string): Promise<number> {
  await mkdir(root, { recursive: true });
  for (const img of [...COLOURS, ...GREYS]) {
    const [r, g, b] = img.rgb;
    await writeFile(
      join(root, img.name),
      await sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer(),
    );
  }
  await writeFile(join(root, 'corrupt.jpg'), '<html>not an image</html>');
  await writeFile(join(root, 'empty.png'), Buffer.alloc(0));
  return COLOURS.length + GREYS.length + BROKEN.length;
}

/** `n` 8×8 PNGs `img-<i>.png` into a new folder `root`: odd ones saturated red (little keeps them), even ones grey (big's). */
export async function writeAlternatingImages(root: string, n: number): Promise<void> {
  await mkdir(root);
  for (let i = 0; i < n; i++) {
    const background = i % 2 ? { r: 255, g: 0, b: 0 } : { r: 100, g: 100, b: 100 };
    await writeFile(
      join(root, `img-${i}.png`),
      await sharp({ create: { width: 8, height: 8, channels: 3, background } })
        .png()
        .toBuffer(),
    );
  }
}

/** A model spec for an 8×8 colour model: no resize blur, no normalisation, so channel means are exact. */
export function colourSpec(path: string, labels: string) {
  return { path, labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' as const } };
}

/**
 * The colour cascade's config (little and big colour models, threshold 0.9, batches of 4), with
 * `rest` (Redis, prefix, stores, limits…) laid over it.
 */
export function colourCascade(models: { colourLittle: string; colourBig: string; labels: string }, rest: Record<string, unknown> = {}) {
  return {
    little: colourSpec(models.colourLittle, models.labels),
    big: colourSpec(models.colourBig, models.labels),
    threshold: 0.9,
    batchSize: 4,
    ...rest,
  };
}

/**
 * The config of an audited colour run whose review export has both kinds of image: at threshold
 * 0.3 the little model keeps the light greys as a colour (p ≈ 0.32-0.33) where the big model
 * says "other", and audits at fraction 1 show those disagreements. Black stays at little as
 * "other" with p 0.71; greys 64 and 96 go to big (p 0.92, 0.90).
 */
export function auditedColourConfig(models: { colourLittle: string; colourBig: string; labels: string }, redisUrl: string, prefix: string) {
  return colourCascade(models, { threshold: 0.3, redisUrl, prefix, audit: { fraction: 1 } });
}
