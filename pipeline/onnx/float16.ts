/**
 * IEEE 754 binary16 ("half") encoding for float16 model inputs. Node 20 has neither
 * Float16Array nor Math.f16round, so tensors carry the raw half bits in a Uint16Array
 * (which is what onnxruntime accepts for 'float16' tensors).
 */

/** A model input's data: float32 values, or float16 as raw half bits. */
export type Tensor = Float32Array | Uint16Array;

// Reading a double's exponent field exactly needs its bits; Math.log2 can be off by one near powers of two.
const scratch = new DataView(new ArrayBuffer(8));

const MIN_NORMAL = 2 ** -14;
/** Halfway between the largest finite half (65504) and 65536: from here on, rounding gives Infinity. */
const OVERFLOW = 65520;

/** Python/IEEE round-half-to-even of a non-negative double. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Rounds a number to the nearest binary16 (ties to even) and returns its 16 bits; NaN gives the quiet NaN 0x7e00. */
export function toFloat16Bits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a >= OVERFLOW) return sign | 0x7c00;
  // Every step below is exact in float64 (power-of-two scaling of values with < 53 significant
  // bits), so the single rounding is done by roundHalfEven: a float32 input is converted
  // exactly, and a float64 input is rounded once rather than twice via float32.
  if (a < MIN_NORMAL) {
    // Subnormal: units of 2^-24. Rounding up to 1024 yields 0x0400, the smallest normal: still correct.
    return sign | roundHalfEven(a * 2 ** 24);
  }
  scratch.setFloat64(0, a);
  const exponent = ((scratch.getUint16(0) >>> 4) & 0x7ff) - 1023;
  const mantissa = roundHalfEven((a * 2 ** -exponent - 1) * 1024);
  // A mantissa that rounds up to 1024 carries into the exponent, which is the correct encoding.
  return sign | (((exponent + 15) << 10) + mantissa);
}

/** Decodes binary16 bits to the number they represent (exact). */
export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/** Converts a float32 array to binary16 bits, element by element (round to nearest even). */
export function toFloat16Array(values: ArrayLike<number>, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  if (out.length !== values.length) throw new RangeError(`out has ${out.length} elements, expected ${values.length}`);
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i]!);
  return out;
}
