import sharp from 'sharp';
import { readdirSync, readFileSync } from 'node:fs';
const dir = '../shared/assets/images';
const rows: [string, number, number][] = [];
for (const f of readdirSync(dir).sort()) {
  const b = readFileSync(`${dir}/${f}`);
  const m = await sharp(b).metadata();
  if (!m.icc) continue;
  const s = m.icc.toString('latin1').replace(/[^\x20-\x7e]+/g, ' ');
  const d = (s.match(/(sRGB|Adobe RGB|Camera RGB|Generic RGB|ColorMatch|Gray Gamma|ProPhoto|Apple RGB)/) ?? ['?'])[0];
  const a = await sharp(b).resize(64, 64, { fit: 'fill' }).toColourspace('srgb').raw().toBuffer();
  const c = await sharp(b, { ignoreIcc: true }).resize(64, 64, { fit: 'fill' }).toColourspace('srgb').raw().toBuffer();
  let sum = 0, max = 0; for (let i = 0; i < a.length; i++) { const x = Math.abs(a[i]! - c[i]!); sum += x; max = Math.max(max, x); }
  rows.push([d, sum / a.length, max]);
}
const by: Record<string, number[][]> = {};
for (const [d, mean, max] of rows) (by[d] ??= []).push([mean, max]);
for (const [d, v] of Object.entries(by)) console.log(d.padEnd(12), v.length, 'mean|diff|', (v.reduce((s, x) => s + x[0]!, 0) / v.length).toFixed(2), 'worst mean', Math.max(...v.map((x) => x[0]!)).toFixed(2), 'max', Math.max(...v.map((x) => x[1]!)));
