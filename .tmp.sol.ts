import sharp from 'sharp';
import { readdirSync, readFileSync } from 'node:fs';
// Use real photos upscaled to 12MP-like sizes? Better: take the largest real photos and a synthetic image.
const dir = '../shared/assets/images';
const files = readdirSync(dir).sort().map((f) => readFileSync(`${dir}/${f}`));
const metas = await Promise.all(files.map((b) => sharp(b).metadata()));
const big = files.map((b, i) => [b, metas[i]!] as const).filter(([, m]) => Math.min(m.width, m.height) >= 600);
console.log('photos with short side >= 600:', big.length);
let acc: Record<string, number[]> = { fast: [], slow: [] };
for (const [b, m] of big) {
  const w = m.width, h = m.height; const rw = w <= h ? 256 : Math.trunc(256 * w / h), rh = w <= h ? Math.trunc(256 * h / w) : 256;
  const ref = await sharp(b, { ignoreIcc: true }).resize(rw, rh, { fit: 'fill' }).gamma(2.2, 2.2).raw().toBuffer(); // gamma() disables shrink-on-load (2.2/2.2 is identity-ish)
  const ref2 = await sharp(b, { ignoreIcc: true }).extract({ left: 0, top: 0, width: w, height: h }).resize(rw, rh, { fit: 'fill' }).raw().toBuffer(); // pre-extract disables shrink-on-load too
  for (const fast of [true, false]) {
    const o = await sharp(b, { ignoreIcc: true }).resize(rw, rh, { fit: 'fill', fastShrinkOnLoad: fast }).raw().toBuffer();
    let s = 0; for (let i = 0; i < o.length; i++) s += Math.abs(o[i]! - ref2[i]!);
    acc[fast ? 'fast' : 'slow']!.push(s / o.length);
  }
}
for (const [k, v] of Object.entries(acc)) console.log(k, 'mean |diff| vs full-res resize', (v.reduce((a, b) => a + b, 0) / v.length).toFixed(3), 'worst', Math.max(...v).toFixed(3));
