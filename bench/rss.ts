/**
 * Worker memory over a long run: N distinct keys through the whole pipeline with the tiny
 * generated models of the tests, sampling this process' RSS over time and against images done.
 * Key lists fold repeats, so the N keys are distinct paths (bench/distinct-keys.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPrivateRedis } from '../cli/private-redis.js';
import { waitForRun } from '../queue/wait-for-run.js';
import { loadConfig } from '../config/load-config.js';
import { listSource } from '../producers/list-source.js';
import { submitRun } from '../producers/submit-run.js';
import { writeTestModels } from '../test/helpers/test-models.js';
import { startRuntime } from '../workers/cascade-runtime.js';
import { distinctKeys } from './distinct-keys.js';
import { slope } from './stats.js';
import { planRun } from '../producers/plan-run.js';

export interface RssSample {
  seconds: number;
  images: number;
  rssMb: number;
}

export interface RssResult {
  images: number;
  /** Refs the submitter listed: `images` when every key is distinct (key lists fold repeats). */
  listed: number;
  seconds: number;
  samples: RssSample[];
  /** Highest sampled RSS, and the kernel's peak (getrusage maxrss) for the whole process. */
  peakRssMb: number;
  maxRssMb: number;
  /** Growth while images flow over the second half of the run, MB per 10k images. */
  slopeMbPer10k: number;
}

/** Run `n` distinct images through the pipeline in this process and sample RSS every `everyMs`. */
export async function rssBench(n: number, log: (line: string) => void, everyMs = 2000): Promise<RssResult> {
  const dir = await mkdtemp(join(tmpdir(), 'cascade-rss-'));
  const server = await startPrivateRedis();
  try {
    const models = await writeTestModels(join(dir, 'models'));
    const list = await distinctKeys(join(dir, 'keys'), n);
    const spec = (path: string) => ({ path, labels: models.labels, preprocess: { resize: 8, crop: 8, mean: [0, 0, 0], std: [1, 1, 1], kernel: 'nearest' } });
    const config = await loadConfig({ overrides: { little: spec(models.colourLittle), big: spec(models.colourBig), threshold: 0.9, prefix: 'rss' } });
    const runtime = await startRuntime(config, server.url, ['little', 'big', 'merge'], () => {});
    const samples: RssSample[] = [];
    let done = 0;
    let started = performance.now();
    const sample = () => {
      samples.push({ seconds: (performance.now() - started) / 1000, images: done, rssMb: process.memoryUsage().rss / 2 ** 20 });
      const s = samples.at(-1)!;
      log(`  ${s.seconds.toFixed(0).padStart(5)} s ${String(done).padStart(8)} images  rss ${s.rssMb.toFixed(1)} MB`);
    };
    const timer = setInterval(sample, everyMs);
    try {
      const run = await planRun(config, list, join(dir, 'out'), runtime.models, 'bench-rss');
      started = performance.now();
      const submitted = await submitRun({
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
      const peakRssMb = Math.max(...samples.map((s) => s.rssMb));
      const maxRssMb = process.resourceUsage().maxRSS / 1024;
      return { images: n, listed: submitted.images, seconds, samples, peakRssMb, maxRssMb, slopeMbPer10k };
    } finally {
      clearInterval(timer);
      await runtime.close();
    }
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
