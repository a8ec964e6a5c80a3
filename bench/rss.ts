/**
 * Worker memory over a long run: many small synthetic images (32×32 PNGs of varied colour,
 * listed repeatedly through a key-list file) through the whole pipeline with the tiny
 * generated models of the tests, sampling this process' RSS as images complete.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { startPrivateRedis } from '../cli/private-redis.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { loadConfig } from '../config/load-config.js';
import { listSource } from '../producers/list-source.js';
import { submitRun } from '../producers/submit-run.js';
import { writeTestModels } from '../test/helpers/test-models.js';
import { startRuntime } from '../workers/cascade-runtime.js';
import { slope } from './stats.js';
import { planRun } from '../producers/plan-run.js';

export interface RssResult {
  images: number;
  seconds: number;
  samples: Array<{ images: number; rssMb: number }>;
  /** Growth over the second half of the run, MB per 10k images. */
  slopeMbPer10k: number;
}

const DISTINCT = 256;

/** Run `n` images through the pipeline and sample RSS every `everyMs`. */
export async function rssBench(n: number, log: (line: string) => void, everyMs = 2000): Promise<RssResult> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-rss-'));
  const server = await startPrivateRedis();
  try {
    const models = await writeTestModels(join(dir, 'models'));
    const files: string[] = [];
    for (let i = 0; i < DISTINCT; i++) {
      const v = (i * 37) % 256;
      const file = join(dir, `img-${i}.png`);
      await writeFile(
        file,
        await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: v, g: (v * 3) % 256, b: i % 2 ? 255 - v : v } } })
          .png()
          .toBuffer(),
      );
      files.push(file);
    }
    const list = join(dir, 'refs.txt');
    await writeFile(list, `${Array.from({ length: n }, (_, i) => files[i % DISTINCT]).join('\n')}\n`);
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
    const config = await loadConfig({ overrides: { little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, prefix: 'rss' } });
    const runtime = await startRuntime(config, server.url, ['little', 'big', 'merge'], () => {});
    const samples: RssResult['samples'] = [];
    let done = 0;
    const sample = () => {
      samples.push({ images: done, rssMb: process.memoryUsage().rss / 2 ** 20 });
      log(`  ${String(done).padStart(8)} images  rss ${samples.at(-1)!.rssMb.toFixed(1)} MB`);
    };
    const timer = setInterval(sample, everyMs);
    try {
      const run = await planRun(config, list, join(dir, 'out'), runtime.models, 'bench-rss');
      const started = performance.now();
      await submitRun({
        spec: run,
        refs: listSource(list, { extensions: config.extensions }),
        tracker: runtime.tracker,
        queues: runtime.queues,
        output: runtime.openOutput(run.out),
      });
      await waitForRun(
        runtime.tracker,
        run.runId,
        (p) => {
          done = p.final;
        },
        500,
      );
      const seconds = (performance.now() - started) / 1000;
      done = n;
      sample();
      // Samples while images were still flowing; the merge at the end is a different phase.
      const half = samples.filter((s) => s.images >= n / 2 && s.images < n);
      const slopeMbPer10k =
        slope(
          half.map((s) => s.images),
          half.map((s) => s.rssMb),
        ) * 10_000;
      return { images: n, seconds, samples, slopeMbPer10k };
    } finally {
      clearInterval(timer);
      await runtime.close();
    }
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
