/**
 * The README's second quick start ("outside this workplace") with the real files: the bytes of
 * ../shared/assets (the label file as Keras publishes it) are served on loopback, since the real
 * URLs are out of reach here; `cascade models download` must accept them under the checksums of
 * config/model-sources.ts, and the shufflenet → mobilenetv2 cascade must then label photos with
 * exactly those files. The exports of that run are checked against the real label file.
 * Skipped, with a message, where the assets are absent.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportLabelStudioConfigCommand } from '../../cli/commands/export-formats.js';
import { downloadModelsCommand } from '../../cli/commands/models-download.js';
import { runCommand } from '../../cli/commands/run.js';
import { MODEL_SOURCES } from '../../config/model-sources.js';
import type { RunSummary } from '../../pipeline/results/manifest.js';
import { startRedis, type TestRedis, uniquePrefix } from '../helpers/redis.js';

const SHARED = resolve(process.env.CASCADE_ASSETS ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'assets'));
const REPO = join(import.meta.dirname, '..', '..');
const present = existsSync(join(SHARED, 'models', 'mobilenetv2-12-int8.onnx')) && existsSync(join(SHARED, 'labels', 'imagenet_class_index.json'));
if (!present) console.warn(`quick-start download suite skipped: no assets at ${SHARED}`);

/**
 * Eight photos and the cascade's answer and stage for each, as measured on the whole quick start
 * (717 photos; numerics `exact`, so the same on every x86 CPU): five kept by shufflenet, three
 * forwarded to mobilenetv2, one of them wrong.
 */
const PHOTOS: Record<string, [string, string]> = {
  'n01484850_great_white_shark.JPEG': ['great_white_shark', 'little'],
  'n01530575_brambling.JPEG': ['brambling', 'little'],
  'n02007558_flamingo.JPEG': ['flamingo', 'little'],
  'n04254680_soccer_ball.JPEG': ['soccer_ball', 'little'],
  'n07920052_espresso.JPEG': ['espresso', 'little'],
  'n01630670_common_newt.JPEG': ['common_newt', 'big'],
  'n01644373_tree_frog.JPEG': ['tree_frog', 'big'],
  'n01689811_alligator_lizard.JPEG': ['whiptail', 'big'],
};

describe.skipIf(!present)('second quick start: downloaded models and label file', () => {
  let dir: string;
  let server: Server;
  let redis: TestRedis;
  let lines: string[];
  const savedAssets = process.env.CASCADE_ASSETS;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cascade-quickstart-'));
    const bytes: Record<string, Buffer> = {
      shufflenet: await readFile(join(SHARED, 'models', 'shufflenet-v2-12-qdq.onnx')),
      mobilenetv2: await readFile(join(SHARED, 'models', 'mobilenetv2-12-int8.onnx')),
      // The workplace copy adds a leading " \n" and a trailing newline to Keras' bytes.
      'imagenet-labels': Buffer.from((await readFile(join(SHARED, 'labels', 'imagenet_class_index.json'), 'utf8')).trim()),
    };
    server = createServer((req, res) => {
      const body = bytes[(req.url ?? '').slice(1)];
      if (body) res.end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    redis = await startRedis();
    // The real sources with only the host changed: the checksums are config/model-sources.ts's own.
    lines = await downloadModelsCommand(
      [],
      {},
      fetch,
      MODEL_SOURCES.map((s) => ({ ...s, url: `${base}/${s.name}` })),
      { CASCADE_ASSETS: join(dir, 'assets') },
    );
    await mkdir(join(dir, 'images'));
    for (const photo of Object.keys(PHOTOS)) await copyFile(join(SHARED, 'images', photo), join(dir, 'images', photo));
  }, 60_000);

  afterAll(async () => {
    if (savedAssets === undefined) delete process.env.CASCADE_ASSETS;
    else process.env.CASCADE_ASSETS = savedAssets;
    await Promise.allSettled([redis?.stop(), new Promise((r) => server?.close(r))]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('downloads both models and the label file under their published checksums', async () => {
    expect(lines.map((l) => l.split(/\s+/).slice(0, 2))).toEqual([
      ['shufflenet', 'downloaded'],
      ['mobilenetv2', 'downloaded'],
      ['imagenet-labels', 'downloaded'],
    ]);
    expect(lines.every((l) => l.includes('sha256 ok'))).toBe(true);
    expect((await readdir(join(dir, 'assets'))).sort()).toEqual(['labels', 'models']);
  });

  it('the shufflenet → mobilenetv2 cascade labels the photos with the downloaded files, and exports a config for its label file', async () => {
    process.env.CASCADE_ASSETS = join(dir, 'assets');
    const config = join(dir, 'cascade.json');
    await writeFile(config, JSON.stringify({ redisUrl: redis.url, prefix: uniquePrefix('quickstart') }));
    const out = join(dir, 'out');
    const summary: RunSummary = await runCommand(join(dir, 'images'), {
      out,
      config,
      little: join(REPO, 'config', 'models', 'shufflenet.yaml'),
      big: join(REPO, 'config', 'models', 'mobilenetv2.yaml'),
      progress: false,
      json: true,
    } as Parameters<typeof runCommand>[1]);
    expect([summary.images, summary.labeled, summary.errors]).toEqual([8, 8, 0]);
    expect(summary.stages.map((s) => s.model?.sha256)).toEqual([MODEL_SOURCES[0]!.sha256, MODEL_SOURCES[1]!.sha256]);
    expect(summary.stages.map((s) => s.model?.path)).toEqual([
      join(dir, 'assets', 'models', 'shufflenet-v2-12-qdq.onnx'),
      join(dir, 'assets', 'models', 'mobilenetv2-12-int8.onnx'),
    ]);
    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; labelName: string; stage: string });
    // Names come from the downloaded label file.
    expect(Object.fromEntries(rows.map((r) => [r.key.slice(r.key.lastIndexOf('/') + 1), [r.labelName, r.stage]]))).toEqual(PHOTOS);
    // The labeling config for that label file: 1000 classes, 998 distinct names (crane and maillot are shared), and the run's names all among them.
    const xmlFile = join(dir, 'config.xml');
    expect(await exportLabelStudioConfigCommand({ model: join(REPO, 'config', 'models', 'mobilenetv2.yaml'), run: out, out: xmlFile })).toBe(998);
    const xml = await readFile(xmlFile, 'utf8');
    expect(xml.match(/<Choice /g)).toHaveLength(998);
    expect(xml).toContain('<Choice value="crane" hint="classes 134, 517"/>');
    expect(xml).toContain('<Choice value="yellow_lady&apos;s_slipper"/>');
  }, 240_000);
});
