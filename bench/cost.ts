/**
 * `npm run bench -- cost`: what configurations cost in machine time, measured, against what their
 * MACs promise. Each configuration runs as its own process (`cascade run` with its private
 * redis-server, or the plain sharp + onnxruntime loop of plain-loop.ts), in interleaved rounds
 * (A B C … A B C …), at two sizes: the difference between them, per image, is the marginal cost
 * with process start, redis-server, model loading and probes taken out. CPU seconds are the
 * whole process tree's (bash's `times` for its waited-for children: cascade and its redis-server).
 *
 * The ideal saving comes from the timing probe (pipeline/cost/model-timing.ts): with decode d,
 * little inference L, big inference B and a fraction f sent to big, a cascade costs
 * (d + L + f·B) / (d + B) of big alone when the big stage reuses the decode, and
 * (d + L + f·(d + B)) / (d + B) when it decodes again (separate workers).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataContext } from '../cli/calibration-data.js';
import { spreadSample, timeModel } from '../cli/model-timings.js';
import { loadConfig, loadModelSpec } from '../config/load-config.js';
import type { ModelTiming } from '../pipeline/cost/model-timing.js';
import { RunSummary } from '../pipeline/results/manifest.js';
import { SUMMARY_KEY } from '../pipeline/results/output-layout.js';
import { findAssets, listPhotos, REPO_ROOT } from './assets.js';
import { median, table } from './stats.js';

export interface CostArgs {
  /** Photos in the large run (spread over the 717). */
  images: number;
  /** Photos in the small run that measures the fixed cost. */
  small: number;
  rounds: number;
  threshold: number;
  log: (line: string) => void;
}

/** Wall and CPU seconds of one process tree. */
export interface Measured {
  wall: number;
  cpu: number;
}

/** user + system seconds of the children from bash's `times` (second line: "0m1.5s 0m0.25s"). */
export function childCpuSeconds(times: string): number {
  const line = times.trim().split('\n')[1] ?? '';
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (parts.length !== 2) throw new Error(`cannot read CPU times from ${JSON.stringify(times)}`);
  return parts[0]! + parts[1]!;
}

/** Per-image cost from a large and a small run: the slope, so fixed start-up costs cancel. */
export function marginal(large: Measured, small: Measured, nLarge: number, nSmall: number): Measured {
  const n = nLarge - nSmall;
  return { wall: (large.wall - small.wall) / n, cpu: (large.cpu - small.cpu) / n };
}

/** A cascade's cost as a fraction of big alone from probe timings: decode shared, or decoded again by the big stage. */
export function idealFraction(little: ModelTiming, big: ModelTiming, routed: number): { sharedDecode: number; ownDecode: number } {
  const d = big.decodeSeconds;
  const whole = d + big.inferSeconds;
  return {
    sharedDecode: (d + little.inferSeconds + routed * big.inferSeconds) / whole,
    ownDecode: (little.decodeSeconds + little.inferSeconds + routed * whole) / whole,
  };
}

/** Run `cmd` as a child of bash and measure its wall time and its whole tree's CPU time. */
async function measure(cmd: readonly string[], env: NodeJS.ProcessEnv, work: string): Promise<Measured & { stdout: string }> {
  const timesFile = join(work, 'times.txt');
  const script = '"$@" 2>"$ERR_FILE"; rc=$?; times >"$TIMES_FILE"; exit $rc';
  const t0 = performance.now();
  const child = spawn('bash', ['-c', script, 'bash', ...cmd], {
    cwd: REPO_ROOT,
    env: { ...env, TIMES_FILE: timesFile, ERR_FILE: join(work, 'stderr.txt') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString('utf8');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const wall = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited ${code}: ${(await readFile(join(work, 'stderr.txt'), 'utf8')).slice(-2000)}`);
  return { wall, cpu: childCpuSeconds(await readFile(timesFile, 'utf8')), stdout };
}

interface Config {
  label: string;
  /** The command for a list file and an output folder. */
  command: (list: string, out: string) => string[];
  cascade: boolean;
}

/** Measure the configurations in interleaved rounds and print the tables. */
export async function costBench(a: CostArgs): Promise<void> {
  const assets = findAssets();
  if ('missing' in assets) {
    a.log(`cost: skipped: ${assets.missing}`);
    return;
  }
  if (!(a.images > a.small && a.small >= 1)) throw new Error(`--images (${a.images}) must be larger than --small (${a.small})`);
  const images = join(assets.dir, 'images');
  const photos = spreadSample(await listPhotos(assets.dir), a.images);
  const few = spreadSample(photos, a.small);
  const work = await mkdtemp(join(tmpdir(), 'cascade-bench-cost-'));
  const spec = (name: string) => join(REPO_ROOT, 'config/models', `${name}.yaml`);
  const specs = { shufflenet: spec('shufflenet'), mobilenetv2: spec('mobilenetv2'), ensemble: spec('ensemble') };
  try {
    const lists = { large: join(work, 'large.txt'), small: join(work, 'small.txt') };
    await writeFile(lists.large, `${photos.join('\n')}\n`);
    await writeFile(lists.small, `${few.join('\n')}\n`);
    // The lists live in the work folder, the photos in the assets: say where local reads may go.
    const config = join(work, 'cascade.json');
    await writeFile(config, JSON.stringify({ sources: { localRoots: [images] } }));

    const loaded = await loadConfig({ file: config, overrides: { little: specs.shufflenet, big: specs.ensemble } });
    const ctx = dataContext(loaded, { progress: false });
    const timings: Record<keyof typeof specs, ModelTiming> = {} as Record<keyof typeof specs, ModelTiming>;
    for (const [name, path] of Object.entries(specs) as Array<[keyof typeof specs, string]>) {
      timings[name] = await timeModel(name, await loadModelSpec(path), spreadSample(photos, 32), ctx, { timeoutSeconds: 600 });
    }

    const run = (little: string, big: string, threshold: number) => (list: string, out: string) => [
      process.execPath,
      'bin/cascade.js',
      'run',
      list,
      '--out',
      out,
      '--little',
      little,
      '--big',
      big,
      '--threshold',
      String(threshold),
      '--config',
      config,
      '--no-progress',
      '--json',
    ];
    const mbv2Path = (await loadModelSpec(specs.mobilenetv2)).path;
    const configs: Config[] = [
      // A one-model run: threshold 0 keeps every answer of the first stage, so the second never runs.
      { label: 'ensemble alone', command: run(specs.ensemble, specs.ensemble, 0), cascade: true },
      { label: 'mobilenetv2 alone', command: run(specs.mobilenetv2, specs.mobilenetv2, 0), cascade: true },
      { label: `shufflenet → ensemble @${a.threshold}`, command: run(specs.shufflenet, specs.ensemble, a.threshold), cascade: true },
      { label: `shufflenet → mobilenetv2 @${a.threshold}`, command: run(specs.shufflenet, specs.mobilenetv2, a.threshold), cascade: true },
      {
        label: 'plain loop: mobilenetv2, sharp + onnxruntime',
        command: (list) => [process.execPath, '--import', 'tsx', 'bench/plain-loop.ts', mbv2Path, list, '32'],
        cascade: false,
      },
    ];
    const env: NodeJS.ProcessEnv = { ...process.env, CASCADE_ASSETS: assets.dir, CASCADE_LOG_LEVEL: 'warn' };
    delete env.REDIS_URL; // each run starts its own private redis-server, counted in its CPU
    const results = new Map(
      configs.map((c) => [c.label, { large: [] as Measured[], small: [] as Measured[], routed: 0, macsSaved: 0, reportedSaved: [] as number[] }]),
    );
    a.log(`cost: ${photos.length} and ${few.length} photos, ${a.rounds} interleaved rounds, threshold ${a.threshold} maxprob`);
    let runNo = 0;
    for (let r = 0; r < a.rounds; r++) {
      for (const c of configs) {
        const res = results.get(c.label)!;
        for (const size of ['large', 'small'] as const) {
          const out = join(work, `out-${runNo++}`);
          const m = await measure(c.command(lists[size], out), env, work);
          res[size].push(m);
          if (c.cascade && size === 'large') {
            const summary = RunSummary.parse(JSON.parse(await readFile(join(out, SUMMARY_KEY), 'utf8')));
            res.routed = summary.stages[1]?.reach ?? 0;
            res.macsSaved = summary.macs.saved;
            // What the run itself measured and reported (summary.json cost), for comparison.
            if (summary.cost?.saved != null) res.reportedSaved.push(summary.cost.saved);
          }
          await rm(out, { recursive: true, force: true });
        }
        a.log(`  round ${r + 1} ${c.label}: ${res.large.at(-1)!.wall.toFixed(1)} s wall, ${res.large.at(-1)!.cpu.toFixed(1)} s CPU (${photos.length} photos)`);
      }
    }

    const med = (xs: Measured[]): Measured => ({ wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)) });
    const per = new Map(
      configs.map((c) => {
        const res = results.get(c.label)!;
        return [
          c.label,
          {
            // Each round's two sizes ran back to back: their difference drifts less than medians taken apart.
            ...med(res.large.map((l, r) => marginal(l, res.small[r]!, photos.length, few.length))),
            whole: med(res.large),
            routed: res.routed,
            macsSaved: res.macsSaved,
            reportedSaved: res.reportedSaved.length ? median(res.reportedSaved) : null,
          },
        ];
      }),
    );
    const ms = (s: number) => (1000 * s).toFixed(1);
    a.log('');
    a.log(
      table(
        ['configuration', 'wall ms/img', 'CPU ms/img', `whole run wall s (${photos.length})`, 'whole run CPU s', 'to big', 'MACs saved'],
        configs.map((c) => {
          const p = per.get(c.label)!;
          return [
            c.label,
            ms(p.wall),
            ms(p.cpu),
            p.whole.wall,
            p.whole.cpu,
            c.cascade ? `${(100 * p.routed).toFixed(1)}%` : '',
            c.cascade ? `${(100 * p.macsSaved).toFixed(1)}%` : '',
          ];
        }),
      ),
    );
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const rows: Array<Array<string | number>> = [];
    for (const [little, big] of [
      ['shufflenet', 'ensemble'],
      ['shufflenet', 'mobilenetv2'],
    ] as const) {
      const p = per.get(`${little} → ${big} @${a.threshold}`)!;
      const alone = per.get(`${big} alone`)!;
      const ideal = idealFraction(timings[little], timings[big], p.routed);
      rows.push([
        `${little} → ${big} vs ${big} alone`,
        pct(1 - p.wall / alone.wall),
        pct(1 - p.cpu / alone.cpu),
        pct(p.macsSaved),
        pct(1 - ideal.sharedDecode),
        pct(1 - ideal.ownDecode),
        p.reportedSaved === null ? '—' : pct(p.reportedSaved),
      ]);
    }
    a.log('');
    a.log(table(['saved', 'wall', 'CPU', 'MACs', 'ideal, one decode', 'ideal, decode per stage', 'summary.json cost'], rows));
    const plain = per.get('plain loop: mobilenetv2, sharp + onnxruntime')!;
    const one = per.get('mobilenetv2 alone')!;
    a.log('');
    a.log(
      table(
        ['mobilenetv2 alone', 'wall ms/img', 'CPU ms/img', 'images/s'],
        [
          ['Cascade (cascade run)', ms(one.wall), ms(one.cpu), 1 / one.wall],
          ['plain sharp + onnxruntime loop', ms(plain.wall), ms(plain.cpu), 1 / plain.wall],
          ['Cascade / plain', one.wall / plain.wall, one.cpu / plain.cpu, ''],
        ],
      ),
    );
    a.log('');
    a.log(
      table(
        ['timing probe', 'decode ms/img', 'infer ms/img', 'images', 'batch', 'cpu'],
        Object.entries(timings).map(([name, t]) => [name, ms(t.decodeSeconds), ms(t.inferSeconds), t.images, t.batchSize, t.cpu]),
      ),
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
