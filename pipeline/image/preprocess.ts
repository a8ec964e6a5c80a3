/**
 * Image bytes → normalised CHW tensor for one model, with sharp (libvips).
 *
 * Semantics follow the torchvision ImageNet eval transform
 * (`PIL.Image.open(f).convert('RGB')` → `Resize(size)` → `CenterCrop(crop)` → `ToTensor()` → `Normalize`):
 *
 * - EXIF orientation is applied (PIL does not do this by itself; every viewer does, and a
 *   sideways photo is a different image to a classifier).
 * - Alpha is dropped, not composited: PIL's RGBA→RGB / LA→RGB conversion copies the stored
 *   colour channels and discards alpha (Pillow Convert.c `rgba2rgb`). Fully transparent pixels
 *   therefore show whatever colour the file stores under them (usually black, RGBA 0,0,0,0).
 *   sharp only drops alpha after resizing, in premultiplied space, so alpha images are
 *   flattened to RGB in a first pass and resized in a second.
 * - Colour: RGB and grey pixel values are taken as sRGB and embedded ICC profiles are ignored,
 *   as PIL (and so torchvision/timm training pipelines) does: the model learned from unmanaged
 *   pixels, and skipping the full-resolution colour transform saved a third of the time on our photos. CMYK is converted
 *   with libvips' generic CMYK profile (PIL uses a naive formula, so CMYK differs slightly).
 *   16-bit images are reduced to 8 bits (v >> 8), as PIL does for RGB. Grey becomes R=G=B.
 *   If colour management is ever switched on (drop `ignoreIcc`), note that sharp converts 16-bit
 *   RGB with a profile into Display P3, not sRGB; `.withIccProfile('srgb')` is then needed.
 * - Resize: shorter side = `spec.resize`, longer = trunc(resize * long / short), as torchvision's
 *   `_compute_resized_output_size`. libvips' kernels are close to, not bit-identical with, PIL's.
 * - Crop: top = round((H - cropH) / 2) with Python's round-half-to-even, as torchvision's
 *   `center_crop`; if the resized image is smaller than the crop it is zero-padded first
 *   (left = floor(excess / 2)), also as torchvision.
 */
import sharp, { type Metadata, type OutputInfo, type Sharp, type SharpOptions } from 'sharp';
import type { PreprocessSpec } from '../../config/schema.js';
import { type Tensor, toFloat16Bits } from '../onnx/float16.js';

/** Why an image could not be turned into a tensor. */
export type ImageDecodeReason = 'empty' | 'unsupported-format' | 'too-many-pixels' | 'bad-dimensions' | 'truncated' | 'corrupt';

/** The image bytes are unusable; `reason` says why. Configuration mistakes throw plain errors instead. */
export class ImageDecodeError extends Error {
  override readonly name = 'ImageDecodeError';
  constructor(
    readonly reason: ImageDecodeReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The model input one image is prepared for. */
export interface ModelInputShape {
  height: number;
  width: number;
  dtype: 'float32' | 'float16';
}

/** Resize target and the window kept from it, in oriented (displayed) coordinates. */
export interface CropGeometry {
  resizeWidth: number;
  resizeHeight: number;
  /** Region of the resized image that is kept. */
  extract: { left: number; top: number; width: number; height: number };
  /** Zero padding around the extracted region when the resized image is smaller than the crop. */
  pad: { left: number; top: number; right: number; bottom: number } | null;
}

type NormalizeSpec = Pick<PreprocessSpec, 'colorOrder' | 'scale' | 'mean' | 'std'>;

// Decoders we expect photos in. Everything else libvips can open (SVG rendering, VIPS/PPM/CSV/matrix
// loaders) is attack surface or a mislabelled file, not a photo.
const ACCEPTED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'jp2', 'jxl']);

// libvips refuses images with a side above 10,000,000 pixels (VIPS_MAX_COORD).
const MAX_SIDE = 10_000_000;

/** Decodes, orients, converts to sRGB, resizes, centre-crops and normalises one image into a CHW tensor (float16 as raw half bits). */
export async function preprocessImage(
  bytes: Buffer,
  spec: PreprocessSpec,
  input: ModelInputShape,
  limits: { maxPixels: number },
  out?: Tensor,
): Promise<Tensor> {
  // Validate the configuration before touching the bytes, so a bad spec is never blamed on an image.
  const plane = input.height * input.width;
  if (out && (out.length !== 3 * plane || (input.dtype === 'float16') !== out instanceof Uint16Array)) {
    throw new RangeError(`out must be a ${input.dtype === 'float16' ? 'Uint16Array' : 'Float32Array'} of ${3 * plane} elements`);
  }
  cropSize(spec, input);
  if (bytes.length === 0) throw new ImageDecodeError('empty', 'image is empty (0 bytes)');

  // 'warning' is the only level at which libjpeg's "premature end of data segment" (a corrupt
  // scan whose remainder would decode as flat grey) fails; 'error'/'truncated' let it through.
  const options: SharpOptions = { failOn: 'warning', limitInputPixels: limits.maxPixels, ignoreIcc: true };

  let meta: Metadata;
  try {
    // Header only, so no pixel limit needed yet; our own check below can then name the size.
    meta = await sharp(bytes, { ...options, limitInputPixels: false }).metadata();
  } catch (err) {
    throw toDecodeError(err);
  }
  if (!ACCEPTED_FORMATS.has(meta.format)) {
    throw new ImageDecodeError('unsupported-format', `${meta.format} images are not accepted`);
  }
  const { width, height } = meta.autoOrient;
  if (!(width > 0 && height > 0)) throw new ImageDecodeError('corrupt', `image header gives no size (${width}x${height})`);
  if (width * height > limits.maxPixels) {
    throw new ImageDecodeError('too-many-pixels', `image is ${width}x${height}, over the ${limits.maxPixels} pixel limit`);
  }
  const geometry = centreCropGeometry(width, height, spec, input);
  if (geometry.resizeWidth > MAX_SIDE || geometry.resizeHeight > MAX_SIDE) {
    throw new ImageDecodeError(
      'bad-dimensions',
      `image is ${width}x${height}: resizing it to a shorter side of ${Math.min(geometry.resizeWidth, geometry.resizeHeight)} exceeds ${MAX_SIDE} pixels`,
    );
  }

  const oriented = meta.orientation !== undefined && meta.orientation !== 1;

  let data: Buffer;
  let info: OutputInfo;
  try {
    let image: Sharp;
    if (meta.hasAlpha) {
      let flat = sharp(bytes, options);
      if (oriented) flat = flat.autoOrient();
      // No resize in this pass, so removeAlpha is a plain band drop (PIL semantics), not an unpremultiply.
      const rgb = await flat.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      image = sharp(rgb.data, { raw: { width: rgb.info.width, height: rgb.info.height, channels: rgb.info.channels } });
    } else {
      image = sharp(bytes, options);
    }
    image = image
      // fastShrinkOnLoad false: JPEG DCT downscaling leaves at least 2x for the real kernel, closer to a full-resolution resize.
      .resize(geometry.resizeWidth, geometry.resizeHeight, { fit: 'fill', kernel: spec.kernel, fastShrinkOnLoad: false })
      .extract(geometry.extract);
    if (geometry.pad) image = image.extend({ ...geometry.pad, background: { r: 0, g: 0, b: 0 } });
    // autoOrient after extract on purpose: extract() on an auto-orienting pipeline forces rotation
    // before resize, which disables JPEG shrink-on-load (~4x slower on a 12 MP phone photo). Rotating after
    // the resize is equivalent: sharp swaps the resize target and extracts in oriented coordinates.
    if (oriented && !meta.hasAlpha) image = image.autoOrient();
    ({ data, info } = await image.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw toDecodeError(err);
  }
  // Check the buffer, not info.width/height: sharp reports the extract size even when extend() padded it.
  if (info.channels !== 3 || data.length !== 3 * plane) {
    throw new Error(`sharp produced ${data.length} bytes in ${info.channels} channels, expected ${input.width}x${input.height}x3`);
  }
  const target = out ?? (input.dtype === 'float16' ? new Uint16Array(3 * plane) : new Float32Array(3 * plane));
  return normalizeToChw(data, input.width, input.height, spec, target as Float32Array);
}

/** Computes torchvision's Resize(size) + CenterCrop(crop) geometry for an oriented width x height image. */
export function centreCropGeometry(
  width: number,
  height: number,
  spec: Pick<PreprocessSpec, 'resize' | 'crop'>,
  input: Pick<ModelInputShape, 'height' | 'width'>,
): CropGeometry {
  const [cropHeight, cropWidth] = cropSize(spec, input);
  const size = spec.resize ?? Math.round((Math.max(cropHeight, cropWidth) * 256) / 224);
  // Python's int(size * long / short): float64 product and quotient, then truncation.
  const resizeWidth = width <= height ? size : Math.trunc((size * width) / height);
  const resizeHeight = width <= height ? Math.trunc((size * height) / width) : size;
  const [left, padLeft, padRight, keptWidth] = axis(resizeWidth, cropWidth);
  const [top, padTop, padBottom, keptHeight] = axis(resizeHeight, cropHeight);
  const padded = padLeft + padRight + padTop + padBottom > 0;
  return {
    resizeWidth,
    resizeHeight,
    extract: { left, top, width: keptWidth, height: keptHeight },
    pad: padded ? { left: padLeft, top: padTop, right: padRight, bottom: padBottom } : null,
  };
}

/** One axis of torchvision's center_crop: [offset, padBefore, padAfter, keptLength]. */
function axis(length: number, crop: number): [number, number, number, number] {
  if (crop > length) {
    const excess = crop - length;
    return [0, Math.floor(excess / 2), Math.ceil(excess / 2), length];
  }
  // round(diff / 2) with ties to even: for odd diff the offset is whichever of floor/ceil is even.
  const diff = length - crop;
  const low = Math.floor(diff / 2);
  return [diff % 2 === 0 || low % 2 === 0 ? low : low + 1, 0, 0, crop];
}

/** [height, width] of the crop, which must equal the model input. */
function cropSize(spec: Pick<PreprocessSpec, 'crop'>, input: Pick<ModelInputShape, 'height' | 'width'>): [number, number] {
  if (!Number.isInteger(input.height) || !Number.isInteger(input.width) || input.height < 1 || input.width < 1) {
    throw new RangeError(`model input size must be positive integers, got ${input.height}x${input.width}`);
  }
  const crop = spec.crop ?? [input.height, input.width];
  const [h, w] = typeof crop === 'number' ? [crop, crop] : crop;
  if (h !== input.height || w !== input.width) {
    throw new RangeError(`preprocess crop ${h}x${w} (HxW) does not match the model input ${input.height}x${input.width}`);
  }
  return [h, w];
}

const lutCache = new WeakMap<NormalizeSpec, { f32?: Float32Array; f16?: Uint16Array }>();

/**
 * A uint8 input has only 256 values per channel, so normalisation is a table lookup:
 * exact (each entry is (v*scale - mean)/std computed in float64 and rounded once to the
 * output type) and cheaper than the arithmetic. Entry [c*256 + v] is for output channel c.
 */
function lut(spec: NormalizeSpec, half: boolean): Tensor {
  let entry = lutCache.get(spec);
  if (!entry) {
    entry = {};
    lutCache.set(spec, entry);
  }
  const cached = half ? entry.f16 : entry.f32;
  if (cached) return cached;
  const table = half ? new Uint16Array(768) : new Float32Array(768);
  for (let c = 0; c < 3; c++) {
    const mean = spec.mean[c]!;
    const std = spec.std[c]!;
    for (let v = 0; v < 256; v++) {
      const value = (v * spec.scale - mean) / std;
      table[c * 256 + v] = half ? toFloat16Bits(value) : value;
    }
  }
  if (half) entry.f16 = table as Uint16Array;
  else entry.f32 = table as Float32Array;
  return table;
}

/** Normalises interleaved 8-bit RGB into planar CHW in spec.colorOrder; a Uint16Array `out` receives float16 bits. */
export function normalizeToChw(raw: Uint8Array, width: number, height: number, spec: NormalizeSpec, out?: Float32Array): Float32Array;
export function normalizeToChw(raw: Uint8Array, width: number, height: number, spec: NormalizeSpec, out: Uint16Array): Uint16Array;
export function normalizeToChw(raw: Uint8Array, width: number, height: number, spec: NormalizeSpec, out?: Tensor): Tensor {
  const plane = width * height;
  if (raw.length !== plane * 3) throw new RangeError(`raw has ${raw.length} bytes, expected ${width}x${height}x3 = ${plane * 3}`);
  const target = out ?? new Float32Array(plane * 3);
  if (target.length !== plane * 3) throw new RangeError(`out has ${target.length} elements, expected ${plane * 3}`);
  const table = lut(spec, target instanceof Uint16Array);
  // Output channel 0 is R for RGB, B for BGR; G stays in the middle either way.
  const first = spec.colorOrder === 'BGR' ? 2 : 0;
  const last = 2 - first;
  const p1 = plane;
  const p2 = 2 * plane;
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    target[i] = table[raw[j + first]!]!;
    target[p1 + i] = table[256 + raw[j + 1]!]!;
    target[p2 + i] = table[512 + raw[j + last]!]!;
  }
  return target;
}

/** Maps a sharp/libvips failure onto an ImageDecodeError reason. */
function toDecodeError(err: unknown): ImageDecodeError {
  if (err instanceof ImageDecodeError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const reason: ImageDecodeReason = /Input Buffer is empty/i.test(message)
    ? 'empty'
    : /exceeds pixel limit/i.test(message)
      ? 'too-many-pixels'
      : /unsupported|not supported|no known decoder/i.test(message)
        ? 'unsupported-format'
        : /premature end of JPEG (image|file)|unexpected end|end of (file|stream)|truncated|bad seek/i.test(message)
          ? 'truncated'
          : 'corrupt';
  // sharp ends some messages with ':' and libvips' detail lines, sometimes none: keep it one clean line.
  let detail = message
    .trim()
    .replace(/:$/, '')
    .replace(/\s*\n\s*/g, '; ');
  // libvips' detail lines (e.g. "premature end of JPEG") share one error buffer across threads
  // and are sometimes missing under concurrency; say what the bare failOn message means.
  if (/^Warning treated as error due to failOn setting$/i.test(detail)) detail = 'corrupt or truncated image data (a libvips warning, treated as an error)';
  return new ImageDecodeError(reason, `cannot decode image: ${detail}`, { cause: err });
}
