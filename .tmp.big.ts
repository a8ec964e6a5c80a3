import sharp from 'sharp';
import { preprocessImage } from './pipeline/preprocess.js';
sharp.concurrency(1); sharp.cache(false);
const W = 4032, H = 3024;
const noise = Buffer.alloc(W * H * 3); for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
const base = sharp(noise, { raw: { width: W, height: H, channels: 3 } }).blur(2);
const j6 = await base.clone().withMetadata({ orientation: 6 }).jpeg({ quality: 90 }).toBuffer();
const j1 = await base.clone().jpeg({ quality: 90 }).toBuffer();
const spec = { colorOrder: 'RGB', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], kernel: 'linear' } as const;
const input = { height: 224, width: 224, dtype: 'float32' as const };
async function time(name: string, fn: () => Promise<unknown>) { await fn(); const t = performance.now(); for (let i = 0; i < 30; i++) await fn(); console.log(name.padEnd(50), ((performance.now() - t) / 30).toFixed(1), 'ms'); }
await time('warm', () => preprocessImage(j1, spec as any, input, { maxPixels: 1e8 }));
await time('preprocessImage orientation 1', () => preprocessImage(j1, spec as any, input, { maxPixels: 1e8 }));
await time('preprocessImage orientation 6 (orient after extract)', () => preprocessImage(j6, spec as any, input, { maxPixels: 1e8 }));
// oriented size is 3024x4032 -> 256x341
await time('orientation 6, autoOrient before extract (sharp default)', () => sharp(j6, { autoOrient: true, failOn: 'warning', ignoreIcc: true }).resize(256, 341, { fit: 'fill', fastShrinkOnLoad: false }).extract({ left: 16, top: 58, width: 224, height: 224 }).raw().toBuffer());
await time('orientation 1, fastShrinkOnLoad true', () => sharp(j1, { failOn: 'warning', ignoreIcc: true }).resize(341, 256, { fit: 'fill', fastShrinkOnLoad: true }).extract({ left: 58, top: 16, width: 224, height: 224 }).raw().toBuffer());
await time('orientation 1, no shrink-on-load at all (full decode)', () => sharp(j1, { failOn: 'warning', ignoreIcc: true }).resize(341, 256, { fit: 'fill' }).extract({ left: 58, top: 16, width: 224, height: 224 }).gamma(2.2, 2.2).raw().toBuffer());
// equivalence of the two orient orders
const a = await sharp(j6, { autoOrient: true, ignoreIcc: true }).resize(256, 341, { fit: 'fill', fastShrinkOnLoad: false }).extract({ left: 16, top: 58, width: 224, height: 224 }).raw().toBuffer();
const b = await sharp(j6, { ignoreIcc: true }).resize(256, 341, { fit: 'fill', fastShrinkOnLoad: false }).extract({ left: 16, top: 58, width: 224, height: 224 }).autoOrient().raw().toBuffer();
let sum = 0, max = 0; for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i]! - b[i]!); sum += d; max = Math.max(max, d); }
console.log('orient-before vs orient-after: mean|diff|', (sum / a.length).toFixed(3), 'max', max, 'len', a.length, b.length);
