import sharp from 'sharp';
import { readdirSync, readFileSync } from 'node:fs';
import { preprocessImage } from './pipeline/preprocess.js';
sharp.concurrency(Number(process.env.VIPS_THREADS ?? 1));
sharp.cache(false);
const dir = '../shared/assets/images';
const files = readdirSync(dir).sort();
const bufs = files.map((f) => readFileSync(`${dir}/${f}`));
const spec = { colorOrder: 'RGB', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], kernel: 'linear' } as const;
const input = { height: 224, width: 224, dtype: (process.env.DTYPE ?? 'float32') as 'float32' };
const limits = { maxPixels: 100_000_000 };
for (const b of bufs.slice(0, 20)) await preprocessImage(b, spec as any, input, limits); // warm-up
const times: number[] = [];
const t0 = performance.now();
for (const b of bufs) { const t = performance.now(); await preprocessImage(b, spec as any, input, limits); times.push(performance.now() - t); }
const total = performance.now() - t0;
times.sort((a, b) => a - b);
const q = (p: number) => times[Math.floor(p * (times.length - 1))]!.toFixed(2);
const mb = bufs.reduce((s, b) => s + b.length, 0) / bufs.length / 1024;
console.log(`${bufs.length} imgs (avg ${mb.toFixed(0)} KiB) mean ${(total / bufs.length).toFixed(2)} ms/img  p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}`);
