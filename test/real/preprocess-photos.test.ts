/**
 * Preprocessing on real photos from ../shared/assets/images (or $CASCADE_ASSETS/images): values
 * finite and within the normalisation range, float16 matching float32 (the pixel-exact checks on
 * generated images: unit/preprocess.test.ts). Skipped, with a message, where the assets are absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PreprocessInput } from '../../config/schema.js';
import { preprocessImage } from '../../pipeline/image/preprocess.js';
import { fromFloat16Bits } from '../../pipeline/onnx/float16.js';

const LIMITS = { maxPixels: 100_000_000 };
const assets = resolve(process.env.CASCADE_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets'));
const photoDir = join(assets, 'images');
if (!existsSync(photoDir)) console.warn(`preprocess real-photo tests skipped: no ${photoDir} (set CASCADE_ASSETS)`);

describe.skipIf(!existsSync(photoDir))('preprocessImage: real photos', () => {
  const files = existsSync(photoDir) ? readdirSync(photoDir).sort() : [];
  const sample = files.filter((_, i) => i % Math.max(1, Math.floor(files.length / 12)) === 0).slice(0, 12);

  it.each(['torch', 'caffe'] as const)('gives finite values within the %s normalisation range', async (preset) => {
    const s = PreprocessInput.parse(preset);
    const plane = 224 * 224;
    for (const file of sample) {
      const t = (await preprocessImage(readFileSync(join(photoDir, file)), s, { height: 224, width: 224, dtype: 'float32' }, LIMITS)) as Float32Array;
      expect(t.length).toBe(3 * plane);
      for (let c = 0; c < 3; c++) {
        const lo = Math.fround((0 - s.mean[c]!) / s.std[c]!);
        const hi = Math.fround((255 * s.scale - s.mean[c]!) / s.std[c]!);
        let min = Infinity;
        let max = -Infinity;
        for (let i = c * plane; i < (c + 1) * plane; i++) {
          const v = t[i]!;
          if (!Number.isFinite(v)) expect.fail(`${file}: non-finite value`);
          if (v < min) min = v;
          if (v > max) max = v;
        }
        expect(min, `${file} channel ${c}`).toBeGreaterThanOrEqual(lo);
        expect(max, `${file} channel ${c}`).toBeLessThanOrEqual(hi);
        expect(max - min, `${file} channel ${c} is flat`).toBeGreaterThan((hi - lo) / 10);
      }
    }
  });

  it('gives float16 output matching the float32 output to half precision', async () => {
    const s = PreprocessInput.parse('torch');
    const bytes = readFileSync(join(photoDir, sample[0]!));
    const f32 = (await preprocessImage(bytes, s, { height: 224, width: 224, dtype: 'float32' }, LIMITS)) as Float32Array;
    const f16 = (await preprocessImage(bytes, s, { height: 224, width: 224, dtype: 'float16' }, LIMITS)) as Uint16Array;
    for (let i = 0; i < f32.length; i++) {
      if (Math.abs(fromFloat16Bits(f16[i]!) - f32[i]!) > Math.abs(f32[i]!) * 2 ** -11 + 2 ** -25) expect.fail(`element ${i}`);
    }
  });
});
