/**
 * Throughput on the real photos: the in-process ceiling, the big-only pipeline and the cascade
 * pipeline, interleaved and repeated, reported as medians and ratios of one run.
 */
import { loadModelSpec } from '../config/load-config.js';
import { BIG_SPEC, LITTLE_SPEC, findAssets, listPhotos } from './assets.js';
import { idealSpeedup, idealSpeedupVsRouteAll, measureStageCosts, runCeiling, type CascadeModels } from './ceiling.js';
import { runPipeline, startPipelineEnv, type PipelineResult } from './pipeline.js';
import { median, table } from './stats.js';

export interface ThroughputArgs {
  images: number;
  repeats: number;
  threshold: number;
  /** Extra config for the pipeline runs, e.g. { inferenceThreads: 2 }. */
  config: Record<string, unknown>;
  /** Leave out the big-only pipeline (for quick A/B runs of settings). */
  skipBigOnly?: boolean;
  log: (line: string) => void;
}

/** Run the three throughput benchmarks interleaved and print the table. */
export async function throughputBench(a: ThroughputArgs): Promise<Record<string, number> | null> {
  const assets = findAssets();
  if ('missing' in assets) {
    a.log(`throughput: skipped: ${assets.missing}`);
    return null;
  }
  const photos = await listPhotos(assets.dir, a.images);
  const models: CascadeModels = { little: await loadModelSpec(LITTLE_SPEC), big: await loadModelSpec(BIG_SPEC), threshold: a.threshold, metric: 'maxprob' };
  a.log(`throughput: ${photos.length} photos, threshold ${a.threshold} maxprob, ${a.repeats} interleaved repeats, pipeline config ${JSON.stringify(a.config)}`);
  const costs = await measureStageCosts(photos.slice(0, 48), models);
  const env = await startPipelineEnv(photos);
  const ceiling: number[] = [];
  const ceilingCpu: number[] = [];
  const bigOnly: PipelineResult[] = [];
  const cascade: PipelineResult[] = [];
  let routed = 0;
  try {
    for (let r = 0; r < a.repeats; r++) {
      const c = await runCeiling(photos, models);
      ceiling.push(c.imagesPerSecond);
      ceilingCpu.push(c.cpuMsPerImage);
      routed = c.routed;
      a.log(`  repeat ${r + 1}: ceiling ${c.imagesPerSecond.toFixed(1)} img/s (routed ${(100 * c.routed).toFixed(1)}%)`);
      // margin ≥ 1 needs p1 = 1 and p2 = 0 exactly, so every image goes on to big.
      if (!a.skipBigOnly) {
        const b = await runPipeline(env, { little: LITTLE_SPEC, big: BIG_SPEC, threshold: 1, metric: 'margin', config: a.config, tag: `bigonly${r}` });
        bigOnly.push(b);
        a.log(`  repeat ${r + 1}: big-only pipeline ${b.imagesPerSecond.toFixed(1)} img/s (routed ${(100 * b.routed).toFixed(1)}%)`);
      }
      const k = await runPipeline(env, { little: LITTLE_SPEC, big: BIG_SPEC, threshold: a.threshold, config: a.config, tag: `cascade${r}` });
      cascade.push(k);
      a.log(`  repeat ${r + 1}: cascade pipeline ${k.imagesPerSecond.toFixed(1)} img/s (routed ${(100 * k.routed).toFixed(1)}%)`);
    }
  } finally {
    await env.stop();
  }
  const ceil = median(ceiling);
  const big = median(bigOnly.map((x) => x.imagesPerSecond));
  const cas = median(cascade.map((x) => x.imagesPerSecond));
  const ideal = idealSpeedup(costs, routed);
  const idealRouteAll = idealSpeedupVsRouteAll(costs, routed);
  a.log('');
  const ceilCpu = median(ceilingCpu);
  const bigCpu = median(bigOnly.map((x) => x.cpuMsPerImage));
  const casCpu = median(cascade.map((x) => x.cpuMsPerImage));
  const runs = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ');
  a.log(
    table(
      ['benchmark', 'images/s (median)', 'runs', 'CPU ms/img', 'routed to big'],
      [
        ['ceiling (in-process)', ceil, runs(ceiling), ceilCpu, `${(100 * routed).toFixed(1)}%`],
        [
          'big-only pipeline',
          big,
          runs(bigOnly.map((x) => x.imagesPerSecond)) || 'skipped',
          bigCpu,
          `${(100 * median(bigOnly.map((x) => x.routed))).toFixed(1)}%`,
        ],
        ['cascade pipeline', cas, runs(cascade.map((x) => x.imagesPerSecond)), casCpu, `${(100 * median(cascade.map((x) => x.routed))).toFixed(1)}%`],
      ],
    ),
  );
  a.log('');
  a.log(
    table(
      ['ratio', 'value', 'goal'],
      [
        ['cascade / ceiling', cas / ceil, '≥ 0.9'],
        ['ceiling CPU / cascade CPU (per image)', ceilCpu / casCpu, '≥ 0.9'],
        ['cascade / big-only pipeline', cas / big, `ideal ${idealRouteAll.toFixed(2)}`],
        ['ideal vs this big-only pipeline (d+L+B)/(d+L+f·B)', idealRouteAll, ''],
        ['ideal vs big model alone (d+B)/(d+L+f·B)', ideal, ''],
      ],
    ),
  );
  a.log(`  step costs alone (ms/img, serial): decode ${costs.decodeMs.toFixed(2)}, little ${costs.littleMs.toFixed(2)}, big ${costs.bigMs.toFixed(2)}`);
  a.log('');
  const rows: Array<Array<string | number>> = [];
  for (const [label, runs] of [
    ['big-only', bigOnly],
    ['cascade', cascade],
  ] as const) {
    if (runs.length === 0) continue;
    for (const [i, name] of runs[0]!.summary.stages.map((s) => s.name).entries()) {
      const pick = (f: (r: PipelineResult) => number) => median(runs.map(f));
      rows.push([
        `${label} ${name}`,
        pick((r) => r.summary.stages[i]!.images),
        pick((r) => r.summary.stages[i]!.msPerImage.fetch),
        pick((r) => r.summary.stages[i]!.msPerImage.decode),
        pick((r) => r.summary.stages[i]!.msPerImage.infer),
        pick((r) => r.queueWaitMs[name] ?? Number.NaN),
      ]);
    }
  }
  a.log(table(['stage (pipeline medians)', 'images', 'fetch ms/img', 'decode ms/img', 'infer ms/img', 'queue wait ms/job'], rows));
  return {
    ceiling: ceil,
    bigOnly: big,
    cascade: cas,
    ceilingCpuMs: ceilCpu,
    cascadeCpuMs: casCpu,
    cascadeOverCeiling: cas / ceil,
    cascadeOverBigOnly: cas / big,
    idealSpeedup: ideal,
    idealSpeedupVsRouteAll: idealRouteAll,
  };
}
