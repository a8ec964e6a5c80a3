/**
 * The manifest as Parquet shards, read back by an independent reader: DuckDB (its npm package)
 * reads manifest/*.parquet and must give manifest.jsonl's rows, row for row; the same for the
 * final manifest's Parquet and its JSONL. Also: shard sizes, `jsonl: never` runs read through
 * the one manifest reader (verify, openManifest), stale outputs of an earlier merge removed, an
 * empty run, and shards that are not manifest shards refused in one line. Generated result parts
 * in a real local store; no Redis.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportFinalCommand, finalFormat } from '../../cli/commands/export-final.js';
import { formatSummary } from '../../cli/format-summary.js';
import { DEFAULT_OUTPUT, OutputSettings } from '../../config/schema.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { MANIFEST_TABLE } from '../../pipeline/results/manifest-parquet.js';
import { openManifest } from '../../pipeline/results/manifest-reader.js';
import { mergeRun, writesJsonl } from '../../pipeline/results/merge-run.js';
import { isManifestShardKey, MANIFEST_KEY, manifestShardKey, REVIEWS_KEY } from '../../pipeline/results/output-layout.js';
import { encodeParquet, topLevelColumns } from '../../pipeline/results/parquet-table.js';
import { shardEncoders } from '../../pipeline/results/shard-encoders.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { FINAL_TABLE, FinalRow } from '../../pipeline/reviews/final-manifest.js';
import type { ReviewRow } from '../../pipeline/reviews/review-row.js';
import { reviewsJsonl } from '../../pipeline/reviews/reviews-file.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { writeGeneratedRun } from '../helpers/generated-parts.js';
import { quietly } from '../helpers/quietly.js';

let dir: string;
let duck: Awaited<ReturnType<DuckDBInstance['connect']>>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-parquet-'));
  duck = await (await DuckDBInstance.create(':memory:')).connect();
});
afterAll(async () => {
  duck.closeSync();
  await rm(dir, { recursive: true, force: true });
});

/** DuckDB's answer to `sql`, as plain JSON values (integers and doubles as numbers, lists as arrays, structs as objects). */
async function query(sql: string): Promise<Record<string, unknown>[]> {
  return (await duck.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** The lines of a JSONL file, parsed. */
async function jsonl(file: string): Promise<unknown[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

/** UTF-8 byte order, DuckDB's order for VARCHAR. */
const byKey = (a: { key: unknown }, b: { key: unknown }) => Buffer.compare(Buffer.from(String(a.key)), Buffer.from(String(b.key)));

/** Merges a generated run of `batches` × 32 images into a fresh folder with these output settings. */
async function mergedRun(name: string, batches: number, output: Partial<OutputSettings>) {
  const root = join(dir, name);
  const store = new LocalStore(root);
  const input = await writeGeneratedRun(store, { runId: name, batches, batchSize: 32, seed: 7 });
  const { summary } = await mergeRun(store, { ...input, output: { ...DEFAULT_OUTPUT, ...output } }, () => new Date(1000));
  return { root, store, input, summary };
}

describe('the Parquet manifest read by DuckDB', () => {
  it('equals manifest.jsonl row for row, with typed columns, in shards of whole batches', async () => {
    // 40 batches of 32: shards close at the batch that reaches 300 rows, so 10 batches (320 rows) each,
    // two at once (on worker threads where the machine has cores to spare).
    const { root, summary } = await mergedRun('both', 40, { shardRows: 300, shardConcurrency: 2 });
    expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 4 });
    expect((await readdir(join(root, 'manifest'))).sort()).toEqual([0, 1, 2, 3].map((i) => manifestShardKey(i).slice('manifest/'.length)));

    const glob = sqlString(join(root, 'manifest', '*.parquet'));
    const fromDuck = await query(`SELECT * FROM read_parquet(${glob}) ORDER BY key`);
    const fromJsonl = (await jsonl(join(root, MANIFEST_KEY))) as ManifestRow[];
    expect(fromJsonl).toHaveLength(1280);
    expect(fromJsonl.some((r) => r.error !== null) && fromJsonl.some((r) => r.top5.some((t) => t.name === null))).toBe(true);
    expect(fromDuck).toEqual([...fromJsonl].sort(byKey));
    // Every shard holds 320 rows, in manifest order: the shards in name order are manifest.jsonl.
    const perFile = await query(`SELECT filename, count(*)::INTEGER AS n FROM read_parquet(${glob}, filename = true) GROUP BY filename ORDER BY filename`);
    expect(perFile.map((r) => r.n)).toEqual([320, 320, 320, 320]);
    const inOrder = await query(`SELECT key FROM read_parquet(${glob}, filename = true, file_row_number = true) ORDER BY filename, file_row_number`);
    expect(inOrder.map((r) => r.key)).toEqual(fromJsonl.map((r) => r.key));

    const types = Object.fromEntries((await query(`DESCRIBE SELECT * FROM read_parquet(${glob})`)).map((r) => [r.column_name, r.column_type]));
    expect(types).toEqual({
      key: 'VARCHAR',
      label: 'INTEGER',
      labelName: 'VARCHAR',
      confidence: 'DOUBLE',
      stage: 'VARCHAR',
      top5: 'STRUCT("label" INTEGER, "name" VARCHAR, p DOUBLE)[]',
      error: 'STRUCT(kind VARCHAR, message VARCHAR)',
    });
    // SQL over it reads like the JSONL.
    const [errors] = await query(`SELECT count(*)::INTEGER AS n FROM read_parquet(${glob}) WHERE error.kind = 'decode'`);
    expect(errors!.n).toBe(fromJsonl.filter((r) => r.error?.kind === 'decode').length);
  });

  it('encodes the same bytes on worker threads as in place', async () => {
    const { store } = await mergedRun('threads', 3, { jsonl: 'never' });
    const rows: ManifestRow[] = [];
    for await (const row of await openManifest(store)) rows.push(row);
    // Two threads, as on a machine with three cores; this one may have fewer.
    const pool = shardEncoders(2, 3);
    try {
      const [a, b] = await Promise.all([pool.encode(rows), pool.encode(rows.slice(10))]);
      expect(a.equals(encodeParquet(MANIFEST_TABLE, rows))).toBe(true);
      expect(b.equals(encodeParquet(MANIFEST_TABLE, rows.slice(10)))).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('has one column per ManifestRow field, and the final table one per FinalRow field', () => {
    expect(topLevelColumns(MANIFEST_TABLE)).toEqual(Object.keys(ManifestRow.shape));
    expect(topLevelColumns(FINAL_TABLE)).toEqual(Object.keys(FinalRow.shape));
  });

  it('an empty run still writes one shard, with the schema and no rows', async () => {
    const { root, summary } = await mergedRun('empty', 0, {});
    expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 1 });
    const [row] = await query(`SELECT count(*)::INTEGER AS n FROM read_parquet(${sqlString(join(root, 'manifest', '*.parquet'))})`);
    expect(row!.n).toBe(0);
    expect(await readFile(join(root, MANIFEST_KEY), 'utf8')).toBe('');
  });
});

describe('runs without manifest.jsonl', () => {
  it('`jsonl: auto` writes it up to jsonlMaxImages listed images; always and never are that', () => {
    const auto = { ...DEFAULT_OUTPUT, jsonlMaxImages: 1000 };
    expect([writesJsonl(auto, 1000), writesJsonl(auto, 1001)]).toEqual([true, false]);
    expect([writesJsonl({ ...auto, jsonl: 'always' }, 1e9), writesJsonl({ ...auto, jsonl: 'never' }, 0)]).toEqual([true, false]);
    // Without shards, JSONL is the manifest, whatever the size.
    expect(writesJsonl({ ...auto, parquet: false }, 1e9)).toBe(true);
    expect(OutputSettings.safeParse({ jsonl: 'never', parquet: false }).error?.issues[0]?.message).toBe(
      'jsonl: never with parquet: false would write no manifest at all',
    );
  });

  it('`parquet: false` writes manifest.jsonl alone and removes shards an earlier merge wrote', async () => {
    await mergedRun('no-parquet', 3, {});
    const { root, summary } = await mergedRun('no-parquet', 3, { parquet: false });
    expect(summary.manifest).toEqual({ jsonl: true, parquetShards: 0 });
    expect(await readdir(join(root, 'manifest'))).toEqual([]);
    expect(await jsonl(join(root, MANIFEST_KEY))).toHaveLength(96);
  });

  it('verify and the exports read the shards through the one manifest reader; a re-merge leaves no stale shard or JSONL', async () => {
    const reference = (await jsonl(join((await mergedRun('jsonl-ref', 12, {})).root, MANIFEST_KEY))) as ManifestRow[];
    // An earlier merge of the location wrote JSONL and 12 small shards; this one, over the threshold, only 3.
    const name = 'no-jsonl';
    const first = await mergedRun(name, 12, { shardRows: 1, shardConcurrency: 1 });
    expect(first.summary.manifest).toEqual({ jsonl: true, parquetShards: 12 });
    const { root, store, summary } = await mergedRun(name, 12, { jsonl: 'auto', jsonlMaxImages: 383, shardRows: 128, shardConcurrency: 1 });
    expect(summary.manifest).toEqual({ jsonl: false, parquetShards: 3 });
    // The printed summary names the shards where there is no manifest.jsonl, and manifest.jsonl otherwise.
    expect(formatSummary(summary).split('\n').at(-2)).toBe(`  manifest: ${root}/manifest/ (3 Parquet shards, no manifest.jsonl)`);
    expect(formatSummary(first.summary).split('\n').at(-2)).toBe(`  manifest: ${root}/manifest.jsonl`);
    expect((await readdir(root)).includes(MANIFEST_KEY)).toBe(false);
    expect((await readdir(join(root, 'manifest'))).every((f) => isManifestShardKey(`manifest/${f}`))).toBe(true);
    expect(await readdir(join(root, 'manifest'))).toHaveLength(3);

    const rows: ManifestRow[] = [];
    for await (const row of await openManifest(store)) rows.push(row);
    expect(rows).toEqual(reference);
    const keys = reference.map((r) => r.key);
    const report = await verifyManifest(keys, readManifestLines(root, new Stores({}, { schemes: [] })));
    expect(report).toMatchObject({ ok: true, manifestRows: 384, sourceKeys: 384 });
    // One shard on its own: its 128 rows, the rest of the source missing.
    const one = await verifyManifest(keys, readManifestLines(join(root, manifestShardKey(1)), new Stores({}, { schemes: [] })));
    expect(one).toMatchObject({ ok: false, manifestRows: 128, counts: { missing: 256, invalid: 0 } });
  });

  it('refuses a shard that is not a manifest shard in one line, naming it', async () => {
    const { root, store } = await mergedRun('hostile', 2, { jsonl: 'never' });
    const read = async () => {
      const rows = [];
      for await (const row of await openManifest(store)) rows.push(row);
      return rows;
    };
    await writeFile(join(root, manifestShardKey(0)), 'PAR1 not really');
    await expect(read()).rejects.toThrow(/^manifest\/part-00000\.parquet in .* is not a Parquet file: /);
    // Parquet, but without top5 and error: another table.
    const other = parquetWriteBuffer({
      columnData: [
        { name: 'key', data: ['a'], type: 'STRING' },
        { name: 'label', data: [1], type: 'INT32' },
      ],
    });
    await writeFile(join(root, manifestShardKey(0)), new Uint8Array(other));
    await expect(read()).rejects.toThrow(
      /^manifest\/part-00000\.parquet in .* is not a manifest Parquet file: missing columns labelName, confidence, stage, top5, error$/,
    );
    // A row DuckDB would read but the manifest does not allow (an unknown error kind) is an invalid row of verify, named by shard.
    const rows = (await jsonl(join((await mergedRun('hostile-ref', 2, {})).root, MANIFEST_KEY))) as ManifestRow[];
    const bad = rows.map((r, i) => (i === 5 ? { ...r, label: null, error: { kind: 'meteor', message: 'x' } } : r));
    await writeFile(join(root, manifestShardKey(0)), encodeParquet(MANIFEST_TABLE, bad));
    const report = await verifyManifest(
      rows.map((r) => r.key),
      readManifestLines(root, new Stores({}, { schemes: [] })),
    );
    expect(report.counts).toEqual({ missing: 0, duplicate: 0, unknown: 0, invalid: 1 });
    expect(report.invalid[0]).toMatchObject({ line: 6, key: rows[5]!.key });
    expect(report.invalid[0]!.message).toMatch(/^manifest\/part-00000\.parquet: error\.kind: /);
  });
});

describe('the final manifest as Parquet', () => {
  it('read by DuckDB equals final.jsonl, from a run with reviews and without manifest.jsonl', async () => {
    const { root, store } = await mergedRun('final', 6, { jsonl: 'never' });
    const rows: ManifestRow[] = [];
    for await (const row of await openManifest(store)) rows.push(row);
    // Humans reviewed every tenth image, one of them an error row.
    const reviews: ReviewRow[] = rows
      .filter((_, i) => i % 10 === 0)
      .map((r, i) => ({
        key: r.key,
        label: 281,
        labelName: 'tabby',
        reviewer: i % 2 ? 'ann@example.com' : null,
        reviewedAt: null,
        annotations: 1,
        annotatorsDisagree: false,
        reasons: [],
        source: { format: 'label-studio-json', file: 'export.json', task: String(i) },
      }));
    await store.put(REVIEWS_KEY, reviewsJsonl(reviews));

    const jsonlFile = join(dir, 'final.jsonl');
    const parquetFile = join(dir, 'final.parquet');
    const a = await quietly(() => exportFinalCommand({ run: root, out: jsonlFile }));
    const b = await quietly(() => exportFinalCommand({ run: root, out: parquetFile }));
    expect(b).toEqual(a);
    expect(a).toMatchObject({ rows: 192, human: reviews.length });
    const fromJsonl = (await jsonl(jsonlFile)) as FinalRow[];
    const fromDuck = await query(`SELECT * FROM read_parquet(${sqlString(parquetFile)})`);
    expect(fromDuck).toEqual(fromJsonl);
    expect(fromJsonl.filter((r) => r.label_source === 'human' && r.error !== null).length).toBeGreaterThan(0);
    const types = Object.fromEntries(
      (await query(`DESCRIBE SELECT * FROM read_parquet(${sqlString(parquetFile)})`)).map((r) => [r.column_name, r.column_type]),
    );
    expect([types.label, types.model_label, types.confidence, types.label_source]).toEqual(['INTEGER', 'INTEGER', 'DOUBLE', 'VARCHAR']);
  });

  it('takes its format from --format, else from --out', () => {
    expect([finalFormat({}), finalFormat({ out: 'x.parquet' }), finalFormat({ out: 'x.jsonl', format: 'parquet' })]).toEqual(['jsonl', 'parquet', 'parquet']);
    expect(() => finalFormat({ format: 'csv' })).toThrow(/^--format: unknown format "csv" \(use jsonl or parquet\)$/);
  });
});
