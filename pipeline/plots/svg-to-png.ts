/**
 * Rasterise an SVG document to PNG with sharp (librsvg), for viewers that show no SVG.
 */
import sharp from 'sharp';

/** PNG bytes of `svg`; density 144 renders at twice the SVG's nominal size for sharp text. */
export async function svgToPng(svg: string, density = 144): Promise<Buffer> {
  return sharp(Buffer.from(svg, 'utf8'), { density }).png().toBuffer();
}
