import sharp from 'sharp';
import { readdirSync, readFileSync } from 'node:fs';
sharp.concurrency(1); sharp.cache(false);
const dir = '../shared/assets/images';
const bufs = readdirSync(dir).sort().map((f) => readFileSync(`${dir}/${f}`));
async function bench(name: string, fn: (b: Buffer) => Promise<unknown>) {
  for (const b of bufs.slice(0, 20)) await fn(b);
  const t0 = performance.now();
  for (const b of bufs) await fn(b);
  console.log(name.padEnd(40), ((performance.now() - t0) / bufs.length).toFixed(2), 'ms/img');
}
const geo = async (b: Buffer) => { const m = await sharp(b).metadata(); const { width: w, height: h } = m.autoOrient; const rw = w <= h ? 256 : Math.trunc(256 * w / h), rh = w <= h ? Math.trunc(256 * h / w) : 256; return { m, rw, rh }; };
await bench('metadata only', (b) => sharp(b).metadata());
await bench('full decode raw', (b) => sharp(b).raw().toBuffer());
await bench('full decode raw ignoreIcc', (b) => sharp(b, { ignoreIcc: true }).raw().toBuffer());
for (const fast of [false, true]) for (const ignoreIcc of [false, true]) {
  await bench(`meta+resize+extract fast=${fast} ignoreIcc=${ignoreIcc}`, async (b) => {
    const { rw, rh } = await geo(b);
    return sharp(b, { failOn: 'warning', ignoreIcc }).resize(rw, rh, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: fast }).extract({ left: Math.floor((rw - 224) / 2), top: Math.floor((rh - 224) / 2), width: 224, height: 224 }).toColourspace('srgb').raw().toBuffer();
  });
}
