/**
 * `cascade models download` against a real HTTP server on loopback (the ONNX zoo and the Keras
 * label file are not reachable from CI): checksums verified before a file takes its name, present
 * files skipped, mismatches and HTTP errors reported without leaving anything behind, and the
 * default layout is the one the sample specs in config/models/ read through $CASCADE_ASSETS.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadModelsCommand } from '../../cli/commands/models-download.js';
import { loadModelSpec } from '../../config/load-config.js';
import { MODEL_SOURCES, ModelSource } from '../../config/model-sources.js';
import { DownloadError, downloadVerified } from '../../pipeline/models/model-download.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let server: Server;
let base: string;
let model: Buffer;
let hits = 0;
const REPO = join(import.meta.dirname, '..', '..');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-download-'));
  model = await readFile((await writeTestModels(join(dir, 'src'))).convNet);
  server = createServer((req, res) => {
    hits++;
    if (req.url === '/conv-net.onnx') return void res.end(model);
    if (req.url === '/moved') return void res.writeHead(302, { location: '/conv-net.onnx' }).end();
    const fake = req.url?.startsWith('/fake/') ? fakeBytes(req.url.slice('/fake/'.length)) : null;
    if (fake) return void res.end(fake);
    res.writeHead(404).end('no such file');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Stand-in bytes for a sample source (the real files are in ../shared, which unit tests do not read). */
function fakeBytes(name: string): Buffer | null {
  return MODEL_SOURCES.some((s) => s.name === name) ? Buffer.from(`stand-in bytes of ${name}\n`) : null;
}

/** The sample sources, served by the loopback server, with the stand-ins' checksums. */
const fakeSources = () => MODEL_SOURCES.map((s) => ({ ...s, url: `${base}/fake/${s.name}`, sha256: sha(fakeBytes(s.name)!) }));

describe('models download', () => {
  it('the built-in sources are valid', () => {
    for (const s of MODEL_SOURCES) expect(ModelSource.parse(s)).toEqual(s);
  });

  it('downloads through a redirect, verifies, then skips the present file', async () => {
    const out = join(dir, 'models');
    const sources = [{ name: 'conv', folder: 'models' as const, file: 'conv.onnx', url: `${base}/moved`, sha256: sha(model), license: 'test' }];
    const [line] = await downloadModelsCommand([], { dir: out }, fetch, sources);
    expect(line).toMatch(new RegExp(`^conv\\s+downloaded .*conv\\.onnx \\(${(model.length / 1e3).toFixed(1)} kB, sha256 ok, test\\)$`));
    expect(await readFile(join(out, 'conv.onnx'))).toEqual(model);
    const before = hits;
    const [again] = await downloadModelsCommand(['conv'], { dir: out }, fetch, sources);
    expect(again).toMatch(/^conv\s+present/);
    expect(hits).toBe(before);
    // A different file under that name is replaced by the verified one.
    await writeFile(join(out, 'conv.onnx'), 'stale');
    expect((await downloadVerified({ url: `${base}/conv-net.onnx`, file: 'conv.onnx', sha256: sha(model) }, out)).status).toBe('replaced');
  });

  it('a checksum mismatch keeps nothing; HTTP errors, unreachable hosts and unknown names are clear', async () => {
    const out = join(dir, 'bad');
    const wrong = { url: `${base}/conv-net.onnx`, file: 'conv.onnx', sha256: '0'.repeat(64) };
    await expect(downloadVerified(wrong, out)).rejects.toThrow(
      new RegExp(`checksum mismatch \\(got sha256 ${sha(model)}, expected 0{64}\\); the file was not kept`),
    );
    expect(await readdir(out)).toEqual([]);
    await expect(downloadVerified({ ...wrong, url: `${base}/nope.onnx` }, out)).rejects.toThrow(/HTTP 404/);
    // A port nothing listens on: open one, note it, close it.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = downloadVerified({ ...wrong, url: `http://127.0.0.1:${port}/x.onnx` }, out);
    await expect(refused).rejects.toBeInstanceOf(DownloadError);
    await expect(refused).rejects.toThrow(new RegExp(`cannot fetch http://127.0.0.1:${port}/x.onnx: fetch failed \\(.*ECONNREFUSED`));
    await expect(downloadModelsCommand(['resnet'], { dir: out })).rejects.toThrow(
      'unknown model(s) resnet; choose from shufflenet, mobilenetv2, imagenet-labels',
    );
  });

  it('by default fills $CASCADE_ASSETS the way the sample specs read it: models/ and labels/', async () => {
    const assets = join(dir, 'assets');
    const lines = await downloadModelsCommand([], {}, fetch, fakeSources(), { CASCADE_ASSETS: assets });
    expect(lines.map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ['shufflenet', 'downloaded', join(assets, 'models', 'shufflenet-v2-12-qdq.onnx')],
      ['mobilenetv2', 'downloaded', join(assets, 'models', 'mobilenetv2-12-int8.onnx')],
      ['imagenet-labels', 'downloaded', join(assets, 'labels', 'imagenet_class_index.json')],
    ]);
    // The second quick start's specs resolve to exactly these files.
    for (const spec of ['shufflenet', 'mobilenetv2']) {
      const loaded = await loadModelSpec(join(REPO, 'config', 'models', `${spec}.yaml`), { CASCADE_ASSETS: assets });
      expect(await readFile(loaded.path)).toEqual(fakeBytes(spec));
      expect(loaded.labels).toBe(join(assets, 'labels', 'imagenet_class_index.json'));
    }
    expect(await readFile(join(assets, 'labels', 'imagenet_class_index.json'))).toEqual(fakeBytes('imagenet-labels'));
  });

  it('a model brings its label file; the label file alone is just that; --dir takes every file flat', async () => {
    const a = join(dir, 'one-model');
    const lines = await downloadModelsCommand(['mobilenetv2'], {}, fetch, fakeSources(), { CASCADE_ASSETS: a });
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['mobilenetv2', 'imagenet-labels']);
    const b = join(dir, 'labels-only');
    expect((await downloadModelsCommand(['imagenet-labels'], {}, fetch, fakeSources(), { CASCADE_ASSETS: b })).map((l) => l.split(/\s+/)[0])).toEqual([
      'imagenet-labels',
    ]);
    expect(await readdir(b)).toEqual(['labels']);
    const flat = join(dir, 'flat');
    await downloadModelsCommand(['shufflenet'], { dir: flat }, fetch, fakeSources(), { CASCADE_ASSETS: join(dir, 'unused') });
    expect((await readdir(flat)).sort()).toEqual(['imagenet_class_index.json', 'shufflenet-v2-12-qdq.onnx']);
  });

  it('the label file source is the Keras class index: 1000 classes, pinned by sha256', () => {
    const labels = MODEL_SOURCES.find((s) => s.name === 'imagenet-labels')!;
    expect(labels).toMatchObject({
      folder: 'labels',
      file: 'imagenet_class_index.json',
      url: 'https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json',
      sha256: 'a1e7a966a1f601d39e4b43e119b3e7dd4a2ad3ea08cf69847cbaf021013767bc',
    });
    expect(MODEL_SOURCES.filter((s) => s.folder === 'models').every((s) => s.labels === 'imagenet-labels')).toBe(true);
  });
});
