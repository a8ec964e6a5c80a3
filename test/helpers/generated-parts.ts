/**
 * A finished two-stage run's result parts, generated instead of labelled: what the merge reads,
 * for tests of the manifest's forms and for the merge benchmark. Seeded, so the same arguments
 * write the same parts. Rows mix the cases a manifest holds: little-kept and big answers, image
 * errors, top-5 names that are null, keys and messages with quotes and non-ASCII characters.
 */
import { seeded } from '../../bench/stats.js';
import type { PartRow, ResultPart, StageStats } from '../../pipeline/results/manifest.js';
import type { MergeInput } from '../../pipeline/results/merge-run.js';
import { partKey } from '../../pipeline/results/output-layout.js';
import type { ObjectStore } from '../../pipeline/storage/object-store.js';

const NAMES = ['tabby', 'tiger cat', 'Egyptian cat', 'crane', 'maillot', 'café "noir"', null] as const;
const KINDS = ['decode', 'too-large', 'not-found', 'fetch'] as const;

function stats(o: Partial<StageStats>): StageStats {
  return { images: 0, accepted: 0, forwarded: 0, errors: 0, fetchMs: 1, decodeMs: 2, inferMs: 3, jobMs: 7, ...o };
}

/** The row of image `pos` of a batch: labelled at `stage` or, with `errorKind`, an error row. */
function partRow(rand: () => number, key: string, pos: number, stage: string | null, errorKind?: string): PartRow {
  if (stage === null)
    return {
      pos,
      key,
      label: null,
      labelName: null,
      confidence: null,
      stage: null,
      top5: [],
      error: { kind: errorKind as never, message: `could not read ${key}: «bad» "data"` },
    };
  const top5 = Array.from({ length: 5 }, (_, i) => {
    const label = Math.floor(rand() * 1000);
    return { label, name: NAMES[label % NAMES.length]!, p: rand() / (i + 1) };
  });
  return { pos, key, label: top5[0]!.label, labelName: top5[0]!.name, confidence: top5[0]!.p, stage, top5, error: null };
}

/** Writes `batches` batches of `batchSize` images as little/big parts under `store`; returns what mergeRun needs. */
export async function writeGeneratedRun(
  store: ObjectStore,
  o: { runId?: string; batches: number; batchSize: number; seed?: number; concurrency?: number },
): Promise<MergeInput> {
  const runId = o.runId ?? 'generated';
  const rand = seeded(o.seed ?? 1);
  const puts: Array<Promise<void>> = [];
  for (let batch = 0; batch < o.batches; batch++) {
    const little: PartRow[] = [];
    const big: PartRow[] = [];
    const forwardedConfidence: number[] = [];
    let errors = 0;
    for (let pos = 0; pos < o.batchSize; pos++) {
      const key = `/data/photos/${batch % 7 === 3 ? 'ünïcode ' : ''}img-${String(batch * o.batchSize + pos).padStart(9, '0')}.jpg`;
      const draw = rand();
      if (draw < 0.04) {
        errors++;
        little.push(partRow(rand, key, pos, null, KINDS[pos % KINDS.length]));
      } else if (draw < 0.3) {
        forwardedConfidence.push(rand() / 2);
        big.push(partRow(rand, key, pos, 'big'));
      } else little.push(partRow(rand, key, pos, 'little'));
    }
    const forwarded = big.length;
    const parts: ResultPart[] = [
      {
        runId,
        batch,
        stage: 0,
        stageName: 'little',
        rows: little,
        stats: stats({ images: o.batchSize, accepted: little.length - errors, forwarded, errors }),
        forwardedConfidence,
      },
    ];
    if (forwarded > 0) parts.push({ runId, batch, stage: 1, stageName: 'big', rows: big, stats: stats({ images: forwarded, accepted: forwarded }) });
    for (const part of parts) puts.push(store.put(partKey(batch, part.stage), JSON.stringify(part)));
    // Bounded: a million-image run is tens of thousands of parts.
    if (puts.length >= (o.concurrency ?? 32)) await Promise.all(puts.splice(0));
  }
  await Promise.all(puts);
  return {
    runId,
    source: '/data/photos',
    out: store.describe(),
    threshold: 0.5,
    metric: 'maxprob',
    stages: [
      { name: 'little', gmacsPerImage: 0.3, threshold: 0.5 },
      { name: 'big', gmacsPerImage: 3, threshold: null },
    ],
    batches: o.batches,
    batchSize: o.batchSize,
    listedImages: o.batches * o.batchSize,
    startedAt: new Date(0),
  };
}
