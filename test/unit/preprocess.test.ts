/** Preprocessing, pixel-exact on generated images: float16, normalisation, crop geometry, orientation, decode errors (real photos: real/preprocess-photos.test.ts). */
import { pixelBombPng } from '../helpers/odd-images.js';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { PreprocessInput, PreprocessPresets, PreprocessSpec } from '../../config/schema.js';
import { fromFloat16Bits, toFloat16Array, toFloat16Bits } from '../../pipeline/onnx/float16.js';
import { centreCropGeometry, ImageDecodeError, normalizeToChw, preprocessImage } from '../../pipeline/image/preprocess.js';

type Pixel = readonly number[];
const LIMITS = { maxPixels: 100_000_000 };

/** Interleaved raw pixels from a per-pixel function. */
function raw(width: number, height: number, channels: number, pixel: (x: number, y: number) => Pixel): Buffer {
  const out = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out.set(pixel(x, y), (y * width + x) * channels);
  return out;
}

function png(pixels: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<Buffer> {
  return sharp(pixels, { raw: { width, height, channels } }).png().toBuffer();
}

// Built from PreprocessSpec directly: PreprocessInput's object form ({ preset: 'caffe', ... }) currently
// lets zod's partial() defaults overwrite the preset with torch values.
function spec({ preset = 'torch', ...overrides }: { preset?: keyof typeof PreprocessPresets } & Record<string, unknown> = {}): PreprocessSpec {
  return PreprocessSpec.parse({ ...PreprocessPresets[preset], kernel: 'nearest', ...overrides });
}

/** The value the tensor must hold for 8-bit value v in output channel c, rounded once to float32. */
function expected(s: PreprocessSpec, c: number, v: number): number {
  return Math.fround((v * s.scale - s.mean[c]!) / s.std[c]!);
}

/** Expected CHW tensor for a displayed RGB image given as a pixel function. */
function expectedTensor(s: PreprocessSpec, width: number, height: number, pixel: (x: number, y: number) => Pixel): Float32Array {
  const out = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    const source = s.colorOrder === 'BGR' ? 2 - c : c;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[c * width * height + y * width + x] = expected(s, c, pixel(x, y)[source]!);
  }
  return out;
}

/** Inverts the normalisation of output channel c back to 0..255, for checks that need a tolerance (lossy inputs). */
function denormalise(t: Float32Array, s: PreprocessSpec, c: number, i: number, plane: number): number {
  return (t[c * plane + i]! * s.std[c]! + s.mean[c]!) / s.scale;
}

async function decodeError(promise: Promise<unknown>): Promise<ImageDecodeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageDecodeError);
  return err as ImageDecodeError;
}

// 4x3 image, every pixel distinct in every channel.
const W = 4;
const H = 3;
const distinct = (x: number, y: number): Pixel => [10 + 20 * x + 60 * y, 250 - 15 * x - 50 * y, (37 * x + 91 * y) % 256];

describe('float16', () => {
  it('encodes known values', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 65536 ties to even: Infinity
      [1e6, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
      [2 ** -25 * 1.000001, 0x0001],
      [1.5 * 2 ** -24, 0x0002], // tie between 1 and 2 units: even is 2
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1023.5 * 2 ** -24, 0x0400], // rounds up into the normal range
      [1 + 2 ** -11, 0x3c00], // tie: even mantissa 0
      [1 + 3 * 2 ** -11, 0x3c02], // tie: even mantissa 2
      [1 + 2 ** -11 + 2 ** -40, 0x3c01], // just above the tie; rounding via float32 first would lose this
      [2 - 2 ** -12, 0x4000], // mantissa carry into the exponent
    ];
    for (const [value, bits] of cases) expect(toFloat16Bits(value), `toFloat16Bits(${value})`).toBe(bits);
  });

  it('encodes NaN as a NaN', () => {
    const bits = toFloat16Bits(NaN);
    expect(bits & 0x7c00).toBe(0x7c00);
    expect(bits & 0x03ff).not.toBe(0);
    expect(fromFloat16Bits(bits)).toBeNaN();
  });

  it('round-trips every half and rounds every midpoint to even', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = fromFloat16Bits(h);
      if (Number.isNaN(v)) continue;
      expect(toFloat16Bits(v)).toBe(h);
    }
    for (const sign of [0, 0x8000]) {
      for (let h = 0; h < 0x7bff; h++) {
        const lo = fromFloat16Bits(sign | h);
        const hi = fromFloat16Bits(sign | (h + 1));
        const mid = (lo + hi) / 2; // exact in float64
        const even = h % 2 === 0 ? h : h + 1;
        const tiny = Math.abs(hi - lo) * 2 ** -20;
        if (toFloat16Bits(mid) !== (sign | even)) expect.fail(`midpoint above ${h.toString(16)}`);
        if (toFloat16Bits(mid - Math.sign(mid) * tiny) !== (sign | h)) expect.fail(`below midpoint above ${h.toString(16)}`);
        if (toFloat16Bits(mid + Math.sign(mid) * tiny) !== (sign | (h + 1))) expect.fail(`above midpoint above ${h.toString(16)}`);
      }
    }
  });

  it('agrees with an independent float32 bit-manipulation conversion', () => {
    // Fabian Giesen's float_to_half_fast3_rtne, which leans on float32 addition for subnormals.
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const magicBits = (127 - 15 + 23 - 10 + 1) << 23;
    const magic = new Float32Array(new Uint32Array([magicBits]).buffer)[0]!;
    const reference = (bitsIn: number): number => {
      u[0] = bitsIn;
      const sign = (u[0]! >>> 16) & 0x8000;
      u[0] = u[0]! & 0x7fffffff;
      let o: number;
      if (u[0]! >= (127 + 16) << 23) o = u[0]! > 255 << 23 ? 0x7e00 : 0x7c00;
      else if (u[0]! < 113 << 23) {
        // Aligns the 10 mantissa bits at the bottom; float32 addition does the round-to-even.
        f[0] = f[0]! + magic;
        o = u[0]! - magicBits;
      } else {
        const odd = (u[0]! >>> 13) & 1;
        o = ((u[0]! + ((15 - 127) << 23) + 0xfff + odd) >>> 13) & 0xffff;
      }
      return o | sign;
    };
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const probe = new Float32Array(1);
    const probeBits = new Uint32Array(probe.buffer);
    for (let i = 0; i < 200_000; i++) {
      // Bias exponents towards the half range so subnormals, overflow and ordinary values are all hit.
      const exponent = 100 + (next() % 50);
      const bits = ((next() & 1) << 31) | (exponent << 23) | (next() & 0x7fffff);
      probeBits[0] = bits >>> 0;
      const want = reference(bits >>> 0);
      if (toFloat16Bits(probe[0]!) !== want)
        expect.fail(`float32 bits ${(bits >>> 0).toString(16)}: got ${toFloat16Bits(probe[0]!).toString(16)} want ${want.toString(16)}`);
    }
  });

  it('converts arrays', () => {
    expect([...toFloat16Array(new Float32Array([1, -2, 0.5]))]).toEqual([0x3c00, 0xc000, 0x3800]);
    expect(() => toFloat16Array([1, 2], new Uint16Array(3))).toThrow(RangeError);
  });
});

describe('normalizeToChw', () => {
  const rgb = Uint8Array.from([0, 128, 255, 10, 20, 30]); // 2x1: (0,128,255), (10,20,30)

  it('applies torch normalisation planar in RGB order', () => {
    const s = spec();
    const t = normalizeToChw(rgb, 2, 1, s);
    // Hand-computed: (v/255 - mean) / std.
    expect(t[0]).toBe(Math.fround((0 / 255 - 0.485) / 0.229)); // -2.1179039...
    expect(t[0]).toBeCloseTo(-2.1179039, 6);
    expect(t[1]).toBe(Math.fround((10 / 255 - 0.485) / 0.229));
    expect(t[2]).toBe(Math.fround((128 / 255 - 0.456) / 0.224));
    expect(t[3]).toBe(Math.fround((20 / 255 - 0.456) / 0.224));
    expect(t[4]).toBe(Math.fround((255 / 255 - 0.406) / 0.225)); // 2.64
    expect(t[4]).toBeCloseTo(2.64, 6);
    expect(t[5]).toBe(Math.fround((30 / 255 - 0.406) / 0.225));
  });

  it('applies caffe normalisation with channels in BGR order', () => {
    const s = PreprocessInput.parse('caffe');
    const t = normalizeToChw(rgb, 2, 1, s);
    expect([...t]).toEqual([255 - 103.939, 30 - 103.939, 128 - 116.779, 20 - 116.779, 0 - 123.68, 10 - 123.68].map(Math.fround));
  });

  it('writes into a caller buffer, float16 bits for a Uint16Array', () => {
    const s = spec();
    const out32 = new Float32Array(6);
    expect(normalizeToChw(rgb, 2, 1, s, out32)).toBe(out32);
    const out16 = new Uint16Array(6);
    expect(normalizeToChw(rgb, 2, 1, s, out16)).toBe(out16);
    for (let i = 0; i < 6; i++) {
      const c = Math.floor(i / 2);
      const v = rgb[(i % 2) * 3 + c]!;
      expect(out16[i]).toBe(toFloat16Bits((v * s.scale - s.mean[c]!) / s.std[c]!));
      expect(Math.abs(fromFloat16Bits(out16[i]!) - out32[i]!)).toBeLessThanOrEqual(Math.abs(out32[i]!) * 2 ** -11);
    }
  });

  it('rejects mismatched sizes', () => {
    expect(() => normalizeToChw(rgb, 3, 1, spec())).toThrow(RangeError);
    expect(() => normalizeToChw(rgb, 2, 1, spec(), new Float32Array(5))).toThrow(RangeError);
  });
});

describe('centreCropGeometry', () => {
  const input = { height: 224, width: 224 };

  it('resizes the shorter side and truncates the longer like torchvision', () => {
    // 500x375: long = int(256 * 500 / 375) = int(341.33) = 341; left = round(117 / 2 = 58.5) = 58 (half to even).
    expect(centreCropGeometry(500, 375, {}, input)).toEqual({
      resizeWidth: 341,
      resizeHeight: 256,
      extract: { left: 58, top: 16, width: 224, height: 224 },
      pad: null,
    });
    // 333x500: long = int(256 * 500 / 333) = int(384.38) = 384; top = round(160 / 2) = 80.
    expect(centreCropGeometry(333, 500, {}, input)).toEqual({
      resizeWidth: 256,
      resizeHeight: 384,
      extract: { left: 16, top: 80, width: 224, height: 224 },
      pad: null,
    });
    // 640x427: 256 * 640 / 427 = 383.70 truncates to 383 (rounding would give 384).
    expect(centreCropGeometry(640, 427, {}, input)).toMatchObject({ resizeWidth: 383, resizeHeight: 256, extract: { left: 80 } });
    expect(centreCropGeometry(300, 300, { resize: 232 }, input).resizeWidth).toBe(232);
  });

  it('defaults resize to round(crop * 256 / 224), using the larger crop side', () => {
    expect(centreCropGeometry(1000, 1000, {}, input).resizeWidth).toBe(256);
    expect(centreCropGeometry(1000, 1000, {}, { height: 384, width: 384 }).resizeWidth).toBe(439); // 438.86
    expect(centreCropGeometry(1000, 1000, { crop: [224, 320] }, { height: 224, width: 320 }).resizeWidth).toBe(366); // 365.71
  });

  it('rounds the crop offset half to even, like Python round()', () => {
    const left = (width: number) => centreCropGeometry(width, 4, { resize: 4 }, { height: 4, width: 4 }).extract.left;
    expect(left(5)).toBe(0); // 0.5 -> 0
    expect(left(7)).toBe(2); // 1.5 -> 2 (floor would give 1)
    expect(left(9)).toBe(2); // 2.5 -> 2 (Math.round would give 3)
    expect(left(11)).toBe(4); // 3.5 -> 4
    expect(left(12)).toBe(4);
  });

  it('pads with zeros like torchvision when the crop is larger than the resized image', () => {
    expect(centreCropGeometry(2, 3, { resize: 2 }, { height: 4, width: 5 })).toEqual({
      resizeWidth: 2,
      resizeHeight: 3,
      extract: { left: 0, top: 0, width: 2, height: 3 },
      pad: { left: 1, top: 0, right: 2, bottom: 1 },
    });
  });

  it('refuses a crop that does not match the model input', () => {
    expect(() => centreCropGeometry(100, 100, { crop: 224 }, { height: 256, width: 256 })).toThrow(/does not match the model input/);
  });
});

describe('preprocessImage: pixel-exact', () => {
  const identity = (extra: Record<string, unknown> = {}) => spec({ resize: H, crop: [H, W], ...extra });
  const input = { height: H, width: W, dtype: 'float32' as const };

  it('is exact for RGB / torch when the resize is the identity', async () => {
    const s = identity();
    const image = await png(raw(W, H, 3, distinct), W, H, 3);
    expect(await preprocessImage(image, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, distinct));
  });

  it('is exact for BGR / caffe', async () => {
    const s = identity({ preset: 'caffe' });
    expect(s.colorOrder).toBe('BGR');
    const image = await png(raw(W, H, 3, distinct), W, H, 3);
    const t = (await preprocessImage(image, s, input, LIMITS)) as Float32Array;
    expect(t).toEqual(expectedTensor(s, W, H, distinct));
    // Channel 0 holds blue: pixel (0,0) is (10, 250, 0) so B - 103.939.
    expect(t[0]).toBe(Math.fround(0 - 103.939));
  });

  it('is exact for an exact 2x nearest downsample of constant 2x2 blocks', async () => {
    const s = identity();
    const image = await png(
      raw(2 * W, 2 * H, 3, (x, y) => distinct(x >> 1, y >> 1)),
      2 * W,
      2 * H,
      3,
    );
    expect(await preprocessImage(image, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, distinct));
  });

  it('takes the centre crop at torchvision offsets on non-square images', async () => {
    const s = spec({ resize: 4, crop: 4 });
    const column = (x: number): Pixel => [x * 20, 255 - x * 20, x];
    for (const [width, left] of [
      [7, 2],
      [9, 2],
      [11, 4],
    ] as const) {
      const image = await png(
        raw(width, 4, 3, (x) => column(x)),
        width,
        4,
        3,
      );
      const t = await preprocessImage(image, s, { height: 4, width: 4, dtype: 'float32' }, LIMITS);
      expect(t, `width ${width}`).toEqual(expectedTensor(s, 4, 4, (x) => column(x + left)));
    }
    // Vertical: 4x9 keeps rows 2..5.
    const row = (y: number): Pixel => [y * 25, y, 200 - y * 20];
    const tall = await png(
      raw(4, 9, 3, (_x, y) => row(y)),
      4,
      9,
      3,
    );
    expect(await preprocessImage(tall, s, { height: 4, width: 4, dtype: 'float32' }, LIMITS)).toEqual(expectedTensor(s, 4, 4, (_x, y) => row(y + 2)));
    // Non-square crop [2, 3] of a 7x4 image (resize 4): left = round(4/2) = 2, top = round(2/2) = 1.
    const crop = spec({ resize: 4, crop: [2, 3] });
    const image = await png(raw(7, 4, 3, distinct), 7, 4, 3);
    expect(await preprocessImage(image, crop, { height: 2, width: 3, dtype: 'float32' }, LIMITS)).toEqual(
      expectedTensor(crop, 3, 2, (x, y) => distinct(x + 2, y + 1)),
    );
  });

  it('zero-pads (before normalisation) when the resized image is smaller than the crop', async () => {
    const s = spec({ resize: 2, crop: [4, 5] });
    const image = await png(raw(2, 3, 3, distinct), 2, 3, 3);
    const t = await preprocessImage(image, s, { height: 4, width: 5, dtype: 'float32' }, LIMITS);
    // pad left 1, right 2, top 0, bottom 1.
    expect(t).toEqual(expectedTensor(s, 5, 4, (x, y) => (x >= 1 && x < 3 && y < 3 ? distinct(x - 1, y) : [0, 0, 0])));
  });

  it('applies every EXIF orientation', async () => {
    // Stored 3x2; D(x, y) gives the stored pixel shown at displayed (x, y).
    const sw = 3;
    const sh = 2;
    const stored = (x: number, y: number): Pixel => [x * 80 + y * 10, 200 - x * 50, y * 100 + x];
    const views: Record<number, (x: number, y: number) => [number, number]> = {
      1: (x, y) => [x, y],
      2: (x, y) => [sw - 1 - x, y],
      3: (x, y) => [sw - 1 - x, sh - 1 - y],
      4: (x, y) => [x, sh - 1 - y],
      5: (x, y) => [y, x],
      6: (x, y) => [y, sh - 1 - x],
      7: (x, y) => [sw - 1 - y, sh - 1 - x],
      8: (x, y) => [sw - 1 - y, x],
    };
    for (const [orientation, view] of Object.entries(views)) {
      const o = Number(orientation);
      const [dw, dh] = o >= 5 ? [sh, sw] : [sw, sh];
      const image = await sharp(raw(sw, sh, 3, stored), { raw: { width: sw, height: sh, channels: 3 } })
        .withMetadata({ orientation: o })
        .png()
        .toBuffer();
      expect((await sharp(image).metadata()).orientation).toBe(o);
      const s = spec({ resize: Math.min(dw, dh), crop: [dh, dw] });
      const t = await preprocessImage(image, s, { height: dh, width: dw, dtype: 'float32' }, LIMITS);
      expect(t, `orientation ${o}`).toEqual(expectedTensor(s, dw, dh, (x, y) => stored(...view(x, y))));
    }
  });

  it('orients a downscaled JPEG (shrink-on-load path)', async () => {
    // 1024x768 quadrants stored as red | green / blue | white, EXIF 6 (rotate 90 clockwise):
    // displayed 768x1024 shows blue | red / white | green.
    const quadrant = (x: number, y: number): Pixel => (y < 384 ? (x < 512 ? [220, 30, 30] : [30, 200, 30]) : x < 512 ? [30, 30, 220] : [240, 240, 240]);
    const image = await sharp(raw(1024, 768, 3, quadrant), { raw: { width: 1024, height: 768, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 95 })
      .toBuffer();
    const s = spec({ kernel: 'linear' });
    const t = (await preprocessImage(image, s, { height: 224, width: 224, dtype: 'float32' }, LIMITS)) as Float32Array;
    const plane = 224 * 224;
    const at = (x: number, y: number) => [0, 1, 2].map((c) => denormalise(t, s, c, y * 224 + x, plane));
    const close = (got: number[], want: Pixel) => got.forEach((v, c) => expect(Math.abs(v - want[c]!)).toBeLessThan(8));
    close(at(50, 50), [30, 30, 220]);
    close(at(170, 50), [220, 30, 30]);
    close(at(50, 170), [240, 240, 240]);
    close(at(170, 170), [30, 200, 30]);
  });

  it('drops alpha like PIL convert("RGB"): stored colours, not composited, also across a resize', async () => {
    const s = identity();
    const alpha = (x: number, y: number) => [0, 128, 255, 64][(x + y) % 4]!;
    const rgba = (x: number, y: number): Pixel => [...distinct(x, y), alpha(x, y)];
    const image = await png(raw(W, H, 4, rgba), W, H, 4);
    expect(await preprocessImage(image, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, distinct));
    // With a 2x resize sharp would unpremultiply (fully transparent -> black); we must still see the stored colour.
    const big = await png(
      raw(2 * W, 2 * H, 4, (x, y) => rgba(x >> 1, y >> 1)),
      2 * W,
      2 * H,
      4,
    );
    expect(await preprocessImage(big, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, distinct));
  });

  it('turns grey and grey+alpha into three equal channels', async () => {
    const s = identity();
    const grey = (x: number, y: number): Pixel => [x * 50 + y * 7];
    const rgbOf = (x: number, y: number): Pixel => [grey(x, y)[0]!, grey(x, y)[0]!, grey(x, y)[0]!];
    expect(await preprocessImage(await png(raw(W, H, 1, grey), W, H, 1), s, input, LIMITS)).toEqual(expectedTensor(s, W, H, rgbOf));
    const ga = await sharp(
      raw(W, H, 2, (x, y) => [grey(x, y)[0]!, x * 60]),
      { raw: { width: W, height: H, channels: 2 } },
    )
      .toColourspace('b-w')
      .png()
      .toBuffer();
    expect((await sharp(ga).metadata()).channels).toBe(2);
    expect(await preprocessImage(ga, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, rgbOf));
  });

  it('reduces 16-bit PNGs to their high byte (as PIL does)', async () => {
    const s = identity();
    // Low byte 0xFF: v >> 8 keeps v, while rounding v / 257 would give v + 1.
    const to16 = (p: Pixel) => p.map((v) => (v << 8) | 0xff);
    const pixels16 = new Uint16Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) pixels16.set(to16(distinct(x, y)), (y * W + x) * 3);
    const rgb16 = await sharp(pixels16, { raw: { width: W, height: H, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    const meta = await sharp(rgb16).metadata();
    expect([meta.depth, meta.space]).toEqual(['ushort', 'rgb16']);
    expect(await preprocessImage(rgb16, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, distinct));

    const grey16 = await sharp(
      new Uint16Array(W * H).map((_, i) => (i * 20) << 8),
      { raw: { width: W, height: H, channels: 1 } },
    )
      .toColourspace('grey16')
      .png()
      .toBuffer();
    expect(await preprocessImage(grey16, s, input, LIMITS)).toEqual(expectedTensor(s, W, H, (x, y) => [(y * W + x) * 20, (y * W + x) * 20, (y * W + x) * 20]));
  });

  it('converts CMYK JPEGs to RGB', async () => {
    const colours: Pixel[] = [
      [180, 120, 90],
      [90, 140, 110],
      [70, 90, 160],
      [128, 128, 128],
    ];
    const quadrant = (x: number, y: number) => colours[(y >= 32 ? 2 : 0) + (x >= 32 ? 1 : 0)]!;
    const cmyk = await sharp(raw(64, 64, 3, quadrant), { raw: { width: 64, height: 64, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg({ quality: 100 })
      .toBuffer();
    const meta = await sharp(cmyk).metadata();
    expect([meta.space, meta.channels]).toEqual(['cmyk', 4]);
    const s = spec({ resize: 64, crop: 64 });
    const t = (await preprocessImage(cmyk, s, { height: 64, width: 64, dtype: 'float32' }, LIMITS)) as Float32Array;
    const plane = 64 * 64;
    for (const [x, y] of [
      [16, 16],
      [48, 16],
      [16, 48],
      [48, 48],
    ] as const) {
      // Colours go through a CMYK profile and back: close, not equal.
      const got = [0, 1, 2].map((c) => denormalise(t, s, c, y * 64 + x, plane));
      got.forEach((v, c) => expect(Math.abs(v - quadrant(x, y)[c]!), `(${x},${y}) channel ${c}`).toBeLessThan(20));
    }
  });

  it('returns float16 bits for a float16 model input', async () => {
    const s = identity();
    const image = await png(raw(W, H, 3, distinct), W, H, 3);
    const t = await preprocessImage(image, s, { ...input, dtype: 'float16' }, LIMITS);
    expect(t).toBeInstanceOf(Uint16Array);
    const want = new Uint16Array(3 * W * H);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) want[c * W * H + y * W + x] = toFloat16Bits((distinct(x, y)[c]! * s.scale - s.mean[c]!) / s.std[c]!);
    expect(t).toEqual(want);
  });

  it('writes into a caller-provided tensor slice', async () => {
    const s = identity();
    const image = await png(raw(W, H, 3, distinct), W, H, 3);
    const batch = new Float32Array(2 * 3 * W * H);
    const slot = batch.subarray(3 * W * H);
    expect(await preprocessImage(image, s, input, LIMITS, slot)).toBe(slot);
    expect(slot).toEqual(expectedTensor(s, W, H, distinct));
    await expect(preprocessImage(image, s, input, LIMITS, new Uint16Array(3 * W * H))).rejects.toThrow(RangeError);
  });
});

describe('preprocessImage: errors', () => {
  const s = spec({ kernel: 'linear' });
  const input = { height: 224, width: 224, dtype: 'float32' as const };
  const photo = () =>
    sharp(
      raw(320, 240, 3, (x, y) => [(x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256]),
      { raw: { width: 320, height: 240, channels: 3 } },
    )
      .jpeg({ quality: 90 })
      .toBuffer();

  it('accepts the intact test JPEG', async () => {
    expect((await preprocessImage(await photo(), s, input, LIMITS)).length).toBe(3 * 224 * 224);
  });

  it('rejects an empty buffer', async () => {
    const err = await decodeError(preprocessImage(Buffer.alloc(0), s, input, LIMITS));
    expect(err.reason).toBe('empty');
    expect(err.name).toBe('ImageDecodeError');
  });

  it('rejects non-image data such as an HTML error page', async () => {
    const html = Buffer.from('<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>');
    const err = await decodeError(preprocessImage(html, s, input, LIMITS));
    expect(err.reason).toBe('unsupported-format');
    expect(err.message).toMatch(/unsupported image format/);
  });

  it('rejects SVG, which libvips could render but is no photo', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><rect width="300" height="300"/></svg>');
    expect((await decodeError(preprocessImage(svg, s, input, LIMITS))).reason).toBe('unsupported-format');
  });

  it('rejects a truncated JPEG instead of returning a grey-filled tensor', async () => {
    const jpeg = await photo();
    const err = await decodeError(preprocessImage(jpeg.subarray(0, jpeg.length >> 1), s, input, LIMITS));
    expect(err.reason).toBe('truncated');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('rejects a JPEG whose scan data is cut short by a stray marker', async () => {
    const jpeg = Buffer.from(await photo());
    const scan = jpeg.indexOf(Buffer.from([0xff, 0xda]));
    const middle = (scan + jpeg.length) >> 1;
    jpeg[middle] = 0xff;
    jpeg[middle + 1] = 0xd9; // EOI in the middle of the entropy-coded data
    expect((await decodeError(preprocessImage(jpeg, s, input, LIMITS))).reason).toBe('corrupt');
  });

  it('rejects a PNG with a damaged chunk', async () => {
    const image = Buffer.from(await png(raw(64, 64, 3, distinct), 64, 64, 3));
    const at = image.length >> 1;
    image[at] = image[at]! ^ 0xff;
    expect(['corrupt', 'truncated']).toContain((await decodeError(preprocessImage(image, s, input, LIMITS))).reason);
  });

  it('refuses a pixel bomb from its header, without decoding it', async () => {
    const bomb = pixelBombPng(20_000, 20_000); // 400 Mpx (1.2 GB as RGB) in ~50 KB
    expect(bomb.length).toBeLessThan(100_000);
    // A decode would have run out of the limits' room, or failed as `corrupt`: the reason and the
    // size named in the message come from the header. (How fast: `npm run bench`, not a test.)
    const err = await decodeError(preprocessImage(bomb, s, input, LIMITS));
    expect(err.reason).toBe('too-many-pixels');
    expect(err.message).toMatch(/20000x20000/);
  });

  it('refuses an ordinary image above a small maxPixels', async () => {
    const err = await decodeError(preprocessImage(await photo(), s, input, { maxPixels: 320 * 240 - 1 }));
    expect(err.reason).toBe('too-many-pixels');
    expect(err.message).toMatch(/320x240/);
  });

  it('refuses an aspect ratio whose resize would exceed libvips limits', async () => {
    const strip = await sharp({ create: { width: 40_000, height: 1, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    // Shorter side 1 -> 256 makes the longer side 10,240,000 pixels.
    expect((await decodeError(preprocessImage(strip, s, input, LIMITS))).reason).toBe('bad-dimensions');
  });

  it('throws configuration errors as plain errors, before looking at the bytes', async () => {
    await expect(preprocessImage(Buffer.alloc(0), spec({ crop: 200 }), input, LIMITS)).rejects.toThrow(RangeError);
  });
});
