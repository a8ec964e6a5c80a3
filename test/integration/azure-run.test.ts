/**
 * End to end on Azure Blob Storage (a real Azurite): `cascade run az://…/photos --out az://…/out`
 * with the models, their label file and a key list on az:// too, credentials from the standard
 * AZURE_STORAGE_CONNECTION_STRING. The generated colour models make the routing exact.
 */
import { readFile, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import { ManifestRow, RunSummary } from '../../pipeline/results/manifest.js';
import { AzureBlobStore } from '../../pipeline/storage/azure-store.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, type TestAzurite } from '../helpers/azurite.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { fixture, withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { uniquePrefix } from '../helpers/redis.js';

// Little logits are [8r, 8g, 8b, 2]: saturated colours are ≥ 0.996 sure, greys ≤ 0.72 and go on to big.
const IMAGES: Array<{ name: string; rgb: [number, number, number]; stage: 'little' | 'big'; label: string }> = [
  ...[0, 1, 2].map((i) => ({ name: `red-${i}.png`, rgb: [255, 0, 0] as [number, number, number], stage: 'little' as const, label: 'red' })),
  ...[0, 1].map((i) => ({ name: `sub/green ${i} ü.png`, rgb: [0, 255, 0] as [number, number, number], stage: 'little' as const, label: 'green' })),
  { name: 'blue.png', rgb: [0, 0, 255], stage: 'little', label: 'blue' },
  ...[64, 128, 192].map((v) => ({ name: `grey-${v}.png`, rgb: [v, v, v] as [number, number, number], stage: 'big' as const, label: 'other' })),
];
const CORRUPT = 'corrupt.jpg';
const TOTAL = IMAGES.length + 1;

const work = withTempDir('azure-run');
const redis = withRedis();
const models = withModels(work);
const azurite = fixture<TestAzurite>(
  'azurite',
  () => startAzurite({ containers: ['cascade'] }),
  (a) => a.stop(),
);
let bucket: AzureBlobStore;

beforeAll(async () => {
  // The standard variable, as a user sets it; the run's clients read it on first az:// use.
  process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString();
  bucket = new AzureBlobStore({ client: azurite.client, container: 'cascade' });
  for (const img of IMAGES) {
    const [r, g, b] = img.rgb;
    await bucket.put(
      `photos/${img.name}`,
      await sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer(),
    );
  }
  await bucket.put(`photos/${CORRUPT}`, '<html>not an image</html>');
  await bucket.put('models/little.onnx', await readFile(models.colourLittle));
  await bucket.put('models/big.onnx', await readFile(models.colourBig));
  await bucket.put('models/labels.txt', await readFile(models.labels));
});

afterAll(() => {
  delete process.env.AZURE_STORAGE_CONNECTION_STRING;
});

/** A run config whose models and label file are read from az://cascade/models/. */
async function writeConfig(extra: Record<string, unknown> = {}): Promise<string> {
  const file = `${work.path}/config-${Math.random().toString(36).slice(2)}.json`;
  const spec = (name: string) => colourSpec(`az://cascade/models/${name}.onnx`, 'az://cascade/models/labels.txt');
  const config = {
    little: spec('little'),
    big: spec('big'),
    threshold: 0.9,
    batchSize: 4,
    redisUrl: redis.url,
    prefix: uniquePrefix('azure-run'),
    modelDir: `${work.path}/model-dir`,
    ...extra,
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

async function manifest(out: string): Promise<ManifestRow[]> {
  const text = (await bucket.get(`${out}manifest.jsonl`)).toString('utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => ManifestRow.parse(JSON.parse(l)));
}

function checkRows(rows: ManifestRow[], keyOf: (name: string) => string) {
  const byKey = new Map(rows.map((r) => [r.key, r]));
  for (const img of IMAGES) {
    const row = byKey.get(keyOf(img.name));
    expect(row, img.name).toBeDefined();
    expect({ stage: row!.stage, label: row!.labelName, error: row!.error }, img.name).toEqual({ stage: img.stage, label: img.label, error: null });
  }
  expect(byKey.get(keyOf(CORRUPT))?.error?.kind).toBe('decode');
}

describe('cascade run on Azure Blob Storage', () => {
  it('labels az://cascade/photos into az://cascade/out, models and labels read from az:// too', async () => {
    const started = Date.now();
    const summary = await runCommand('az://cascade/photos', { out: 'az://cascade/out', config: await writeConfig(), progress: false, json: true });
    const seconds = (Date.now() - started) / 1000;
    expect(summary).toMatchObject({ images: TOTAL, errors: 1, errorsByKind: { decode: 1 } });
    expect(summary.stages.map((s) => [s.name, s.images, s.accepted, s.forwarded])).toEqual([
      ['little', TOTAL, 6, 3],
      ['big', 3, 3, 0],
    ]);
    const rows = await manifest('out/');
    expect(rows).toHaveLength(TOTAL);
    checkRows(rows, (name) => `az://cascade/photos/${name}`);
    expect(RunSummary.parse(JSON.parse((await bucket.get('out/summary.json')).toString()))).toEqual(summary);
    // Every blob the run wrote carries its Content-Type; the run's marker is there, written create-only.
    const types: Record<string, string | undefined> = {};
    for await (const { key } of bucket.list('out/')) {
      types[key.slice(key.lastIndexOf('.'))] = (await azurite.client.getContainerClient('cascade').getBlockBlobClient(key).getProperties()).contentType;
    }
    expect(types).toMatchObject({ '.jsonl': 'application/x-ndjson', '.json': 'application/json' });
    expect((await bucket.get('out/_cascade/run.json')).toString()).toContain(summary.runId);
    // For the closing note: rows, errors and seconds of this Azurite run.
    console.info(`azurite run: ${rows.length} rows, ${summary.errors} errors, ${seconds.toFixed(1)} s (summary wall ${summary.wallSeconds.toFixed(1)} s)`);

    // `cascade verify` lists the az:// source as the run did and reads the manifest and parts there.
    const verified = await verifyCommand({ manifest: 'az://cascade/out/', source: 'az://cascade/photos', json: true });
    expect(verified).toMatchObject({ ok: true, provenance: { ok: true } });
    // The same with the account from a config file's azure settings and nothing in the environment.
    const azureConfig = `${work.path}/azure-only.json`;
    await writeFile(azureConfig, JSON.stringify({ azure: { account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, endpoint: azurite.endpoint } }));
    delete process.env.AZURE_STORAGE_CONNECTION_STRING;
    try {
      expect(await verifyCommand({ manifest: 'az://cascade/out/', source: 'az://cascade/photos', config: azureConfig, json: true })).toMatchObject({
        ok: true,
      });
    } finally {
      process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString();
    }

    // A second run may not take the same output: the create-only marker refuses it.
    await expect(
      runCommand('az://cascade/photos', { out: 'az://cascade/out', config: await writeConfig(), progress: false, json: true, runId: 'another-run' }),
    ).rejects.toThrow(/az:\/\/cascade\/out\/ holds run .*choose another --out, or pass --overwrite/);
  });

  it('reads a key list on az://: relative lines are blobs next to it; a missing blob and keys with `..` or `\\` are error rows', async () => {
    const lines = [
      'az://cascade/photos/red-0.png',
      'az://cascade/photos/grey-64.png',
      'az://cascade/photos/nope.png',
      'az://cascade/photos/../models/big.onnx',
      'az://cascade/photos/\\../models/big.onnx',
    ];
    await bucket.put('lists/keys.txt', `# picked by hand\n${lines.join('\n')}\n`);
    await bucket.put('lists/blue.png', await bucket.get('photos/blue.png'));
    await bucket.put('lists/more.txt', 'blue.png\n');
    // This run finds the account in its config file's azure settings, not in the environment.
    const withAccount = await writeConfig({ azure: { account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, endpoint: azurite.endpoint } });
    delete process.env.AZURE_STORAGE_CONNECTION_STRING;
    const summary = await runCommand('az://cascade/lists/keys.txt', {
      out: 'az://cascade/out-list/',
      config: withAccount,
      progress: false,
      json: true,
    }).finally(() => {
      process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString();
    });
    const rows = await manifest('out-list/');
    expect(rows.map((r) => [r.key, r.labelName ?? r.error?.kind])).toEqual([
      ['az://cascade/photos/red-0.png', 'red'],
      ['az://cascade/photos/grey-64.png', 'other'],
      ['az://cascade/photos/nope.png', 'not-found'],
      ['az://cascade/photos/../models/big.onnx', 'forbidden'],
      ['az://cascade/photos/\\../models/big.onnx', 'forbidden'],
    ]);
    expect(summary).toMatchObject({ images: 5, errors: 3 });
    const relative = await runCommand('az://cascade/lists/more.txt', {
      out: 'az://cascade/out-list-2/',
      config: await writeConfig(),
      progress: false,
      json: true,
    });
    expect(relative.images).toBe(1);
    expect((await manifest('out-list-2/')).map((r) => [r.key, r.labelName])).toEqual([['az://cascade/lists/blue.png', 'blue']]);
  });
});
