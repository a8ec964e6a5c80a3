/**
 * Hostile and odd image files, generated in memory (nothing binary is committed): invalid files
 * that must become error rows, and unusual but valid ones that must be labeled.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';

/** One generated file: where it goes, its bytes, and what the manifest row must say. */
export interface OddImage {
  name: string;
  bytes: Buffer;
  /** For invalid files: the row's error kind and a pattern its message must match. */
  error?: { kind: 'decode' | 'too-large'; message: RegExp };
  /** For valid files: the label the colour test models give it (red, green, blue or other). */
  label?: string;
}

const RED = { r: 230, g: 10, b: 10 };

function solid(width: number, height: number, channels: 3 | 4 = 3, colour: { r: number; g: number; b: number; alpha?: number } = RED) {
  return sharp({ create: { width, height, channels, background: channels === 4 ? { alpha: 1, ...colour } : colour } });
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * A valid PNG of `width`×`height` 1-bit greyscale pixels whose all-zero rows deflate to almost
 * nothing (20000×20000, 400 Mpx or 1.2 GB as RGB, is ~50 KB): a real decompression bomb, which
 * a decoder would expand in full, so it must be refused from its header.
 */
export function pixelBombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([1, 0, 0, 0, 0], 8); // 1-bit, greyscale, deflate, no filter, no interlace
  // Each row: filter byte 0, then ceil(width / 8) bytes of zero pixels.
  const rows = Buffer.alloc((1 + Math.ceil(width / 8)) * height);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(rows, { level: 9 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A square of pseudo-random RGB pixels with at least `pixels` pixels (incompressible). */
function noise(pixels: number) {
  const side = Math.ceil(Math.sqrt(pixels));
  const raw = Buffer.alloc(side * side * 3);
  let x = 12345;
  for (let i = 0; i < raw.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    raw[i] = x >>> 24;
  }
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } });
}

/** Files that must become error rows; `maxBytes` is the limit the run is configured with. */
export async function invalidImages(maxBytes: number): Promise<OddImage[]> {
  // Noise makes the entropy-coded scan most of the file, so the cut lands inside it.
  const jpeg = await noise(64 * 64)
    .jpeg()
    .toBuffer();
  const png = await solid(16, 16).png().toBuffer();
  const corruptHeader = Buffer.from(png);
  corruptHeader.writeUInt32BE(0xdeadbeef, 16); // IHDR width, CRC now wrong
  const decode = (message: RegExp) => ({ kind: 'decode' as const, message });
  return [
    { name: 'empty.jpg', bytes: Buffer.alloc(0), error: decode(/empty/) },
    { name: 'text.jpg', bytes: Buffer.from('just some text, not a JPEG\n'), error: decode(/unsupported image format/) },
    { name: 'page.jpg', bytes: Buffer.from('<!doctype html><html><body><h1>404</h1></body></html>'), error: decode(/unsupported image format/) },
    { name: 'truncated.jpg', bytes: jpeg.subarray(0, Math.floor(jpeg.length * 0.7)), error: decode(/premature end of JPEG|corrupt or truncated image data/) },
    { name: 'corrupt-header.png', bytes: corruptHeader, error: decode(/corrupt header/) },
    { name: 'pixel-bomb.png', bytes: pixelBombPng(20000, 20000), error: { kind: 'too-large', message: /20000x20000, over the \d+ pixel limit/ } },
    {
      name: 'huge-file.png',
      bytes: await noise((maxBytes + 50_000) / 3)
        .png({ compressionLevel: 0 })
        .toBuffer(),
      error: { kind: 'too-large', message: new RegExp(`${maxBytes}`) },
    },
  ];
}

/** Unusual but valid images, all labeled by the colour test models. */
export async function validOddImages(): Promise<OddImage[]> {
  const red = (name: string, bytes: Buffer): OddImage => ({ name, bytes, label: 'red' });
  return [
    { name: 'grey.jpg', bytes: await solid(32, 24, 3, { r: 128, g: 128, b: 128 }).toColourspace('b-w').jpeg().toBuffer(), label: 'other' },
    red('cmyk.jpg', await solid(32, 24).toColourspace('cmyk').jpeg().toBuffer()),
    red('sixteen-bit.png', await solid(32, 24).toColourspace('rgb16').png().toBuffer()),
    red(
      'alpha.png',
      await solid(32, 24, 4, { ...RED, alpha: 0.5 })
        .png()
        .toBuffer(),
    ),
    red('exif-rotated.jpg', await solid(40, 20).jpeg().withMetadata({ orientation: 6 }).toBuffer()),
    red('one-pixel.png', await solid(1, 1).png().toBuffer()),
    red('panorama-wide.png', await solid(4000, 8).png().toBuffer()),
    red('panorama-tall.png', await solid(8, 4000).png().toBuffer()),
    red('photo.webp', await solid(32, 24).webp().toBuffer()),
    red('photo.avif', await solid(32, 24).avif().toBuffer()),
    red('photo.gif', await solid(32, 24).gif().toBuffer()),
    red('photo.tiff', await solid(32, 24).tiff().toBuffer()),
    red('png-named.jpg', await solid(32, 24).png().toBuffer()),
    red('name with spaces.png', await solid(16, 16).png().toBuffer()),
    red('café é.png', await solid(16, 16).png().toBuffer()),
    red('日本/写真.png', await solid(16, 16).png().toBuffer()),
  ];
}

/** Writes `images` under `dir` (subfolders created as needed). */
export async function writeOddImages(dir: string, images: OddImage[]): Promise<void> {
  for (const img of images) {
    await mkdir(dirname(join(dir, img.name)), { recursive: true });
    await writeFile(join(dir, img.name), img.bytes);
  }
}
