// Picks `count` photos spread evenly over the sorted file names of <src> and writes them to <dest>
// as JPEGs whose shorter side is at most `side` px (EXIF orientation applied, names kept, so the
// ground-truth CSV still matches). Smaller photos are copied as they are.
// Usage: node gpu/bundle-images.mjs <src> <dest> <count> <side> [quality]
import { copyFileSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';

const [src, dest, countArg, sideArg, qualityArg] = process.argv.slice(2);
if (!src || !dest) {
  console.error('usage: node gpu/bundle-images.mjs <src> <dest> <count> <side> [quality]');
  process.exit(2);
}
const count = Number(countArg ?? 300);
const side = Number(sideArg ?? 320);
const quality = Number(qualityArg ?? 88);
const names = readdirSync(src)
  .filter((n) => /^\.(jpe?g|png|webp)$/i.test(extname(n)))
  .sort();
const picked = Array.from({ length: Math.min(count, names.length) }, (_, i) => names[Math.floor((i * names.length) / Math.min(count, names.length))]);
mkdirSync(dest, { recursive: true });
let bytes = 0;
let resized = 0;
for (const name of picked) {
  const from = join(src, name);
  const to = join(dest, name);
  const meta = await sharp(from).metadata();
  const { width, height } = meta.autoOrient ?? meta;
  if (Math.min(width, height) <= side && (meta.orientation ?? 1) === 1) {
    copyFileSync(from, to);
  } else {
    const out = await sharp(from)
      .autoOrient()
      .resize(width <= height ? { width: Math.min(side, width) } : { height: Math.min(side, height) })
      .jpeg({ quality })
      .toBuffer();
    writeFileSync(to, out);
    resized++;
  }
  bytes += statSync(to).size;
}
console.log(
  `images: ${picked.length} of ${names.length} photos, ${resized} resized to a shorter side of ${side} px (JPEG q${quality}), ${(bytes / 1e6).toFixed(1)} MB`,
);
