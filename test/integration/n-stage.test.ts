/**
 * N-stage cascades: a 3-stage run end to end on real redis-server and generated models, with
 * exact per-stage counts (the `stages:` config form: unit/stages-config.test.ts).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { CascadeQueues } from '../../queue/cascade-queues.js';
import { EVENTS_MAX_LEN, stageJobId, stageQueueName } from '../../queue/jobs.js';
import { connectRedis } from '../../queue/redis-connection.js';
import { colourSpec, COLOURS, GREYS, writeColourImages } from '../helpers/colour-fixture.js';
import { completedJobIds } from '../helpers/queue-events.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

const work = withTempDir('nstage');
const redis = withRedis();
const models = withModels(work);
let images: string;
let total: number;

beforeAll(async () => {
  images = join(work.path, 'images');
  total = await writeColourImages(images);
});

async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const file = join(work.path, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ batchSize: 4, redisUrl: redis.url, prefix: uniquePrefix('n'), ...config }));
  return file;
}

const threeStages = () => [
  { model: colourSpec(models.colourLittle, models.labels), threshold: 0.9 },
  { name: 'mid', model: colourSpec(models.colourBig, models.labels), threshold: 0.9 },
  { model: colourSpec(models.colourBig, models.labels) },
];

describe('3-stage cascade run', () => {
  it('routes little → mid → big with exact per-stage counts, MACs and reach', async () => {
    const config = await writeConfig({ stages: threeStages() });
    const prefix = JSON.parse(await readFile(config, 'utf8')).prefix as string;
    const out = join(work.path, 'out-3');
    const summary = await runCommand(images, { out, config, progress: false, json: true });

    // Little (logits [8r,8g,8b,2]) is ≥ 0.996 sure of saturated colours, ≤ 0.72 of greys.
    // The mid model (softmax [8r,8g,8b,4+2(r+g+b)]) is sure of "other" only for dark greys:
    // p = 0.948 at v=0, 0.917 at 64/255, 0.896 at 96/255 and less above, so 2 of 6 stop there.
    expect(summary.stages.map((s) => [s.name, s.images, s.accepted, s.forwarded, s.errors])).toEqual([
      ['little', total, COLOURS.length, GREYS.length, 2],
      ['mid', 6, 2, 4, 0],
      ['big', 4, 4, 0, 0],
    ]);
    const inferred = total - 2;
    expect(summary.stages.map((s) => s.reach)).toEqual([1, 6 / inferred, 4 / inferred]);
    expect(summary.fractionToBig).toBe(4 / inferred);
    const [g0, g1, g2] = summary.stages.map((s) => s.gmacsPerImage) as [number, number, number];
    expect(summary.macs.cascadeG).toBeCloseTo(inferred * g0 + 6 * g1 + 4 * g2, 12);
    expect(summary.macs.bigOnlyG).toBeCloseTo(inferred * g2, 12);

    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    const stageOf = new Map(rows.map((r) => [r.key.slice(images.length + 1), r.stage]));
    for (const c of COLOURS) expect(stageOf.get(c.name), c.name).toBe('little');
    expect(GREYS.map((g) => stageOf.get(g.name))).toEqual(['mid', 'mid', 'big', 'big', 'big', 'big']);
    expect(rows.filter((r) => r.stage !== 'little' && !r.error).every((r) => r.labelName === 'other')).toBe(true);
    expect(RunSummary.parse(JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')))).toEqual(summary);

    // Each stage ran on its own queue: BullMQ's event stream of each queue records which batch
    // jobs completed there. Batches of 4 in file order (from 0): batch 2 holds grey-0/128/160, batch 3
    // grey-192/64/96; mid keeps grey-0 and grey-64, so both batches go on to big.
    const runId = summary.runId;
    const connection = connectRedis(redis.url);
    const queues = new CascadeQueues(connection, prefix);
    try {
      const completed = async (stage: string) => (await completedJobIds(connection, prefix, stageQueueName(stage))).sort();
      expect(await completed('little')).toEqual([0, 1, 2, 3, 4].map((b) => stageJobId(runId, b, 0)).sort());
      expect(await completed('mid')).toEqual([stageJobId(runId, 2, 1), stageJobId(runId, 3, 1)]);
      expect(await completed('big')).toEqual([stageJobId(runId, 2, 2), stageJobId(runId, 3, 2)]);
      for (const name of ['little', 'mid', 'big'])
        expect(await queues.stage(name).getJobCounts('waiting', 'active', 'failed'), name).toEqual({ waiting: 0, active: 0, failed: 0 });
      // Nobody reads the event streams: BullMQ's scripts trim each to about EVENTS_MAX_LEN entries.
      expect(await connection.hget(`${prefix}:${stageQueueName('little')}:meta`, 'opts.maxLenEvents')).toBe(String(EVENTS_MAX_LEN));
    } finally {
      await queues.close();
      connection.disconnect();
    }
  });

  it('audits go from the first stage straight to the last, skipping the middle one', async () => {
    const config = await writeConfig({ stages: threeStages(), audit: { fraction: 1 } });
    const out = join(work.path, 'out-3-audit');
    const summary = await runCommand(images, { out, config, progress: false, json: true });
    // The 12 saturated colours little kept are audited by big (which agrees on all); the mid
    // stage sees only the 6 forwarded greys, exactly as without audits.
    expect(summary.stages.map((s) => [s.name, s.images])).toEqual([
      ['little', total],
      ['mid', 6],
      ['big', 4],
    ]);
    expect(summary.audit).toMatchObject({ sampled: COLOURS.length, agreeing: COLOURS.length, agreement: 1 });
    expect(summary.audit!.gmacs).toBe(COLOURS.length * summary.stages[2]!.gmacsPerImage);
  });
});
