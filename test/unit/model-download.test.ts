/**
 * `cascade models download` against a real HTTP server on loopback (the ONNX zoo itself is
 * not reachable from CI): checksums verified before a file takes its name, present files
 * skipped, mismatches and HTTP errors reported without leaving anything behind.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadModelsCommand } from '../../cli/commands/models-download.js';
import { MODEL_SOURCES, ModelSource } from '../../config/model-sources.js';
import { DownloadError, downloadVerified } from '../../pipeline/models/model-download.js';
import { writeTestModels } from '../helpers/test-models.js';

let dir: string;
let server: Server;
let base: string;
let model: Buffer;
let hits = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-download-'));
  model = await readFile((await writeTestModels(join(dir, 'src'))).convNet);
  server = createServer((req, res) => {
    hits++;
    if (req.url === '/conv-net.onnx') return void res.end(model);
    if (req.url === '/moved') return void res.writeHead(302, { location: '/conv-net.onnx' }).end();
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

describe('models download', () => {
  it('the built-in sources are valid', () => {
    for (const s of MODEL_SOURCES) expect(ModelSource.parse(s)).toEqual(s);
  });

  it('downloads through a redirect, verifies, then skips the present file', async () => {
    const out = join(dir, 'models');
    const sources = [{ name: 'conv', file: 'conv.onnx', url: `${base}/moved`, sha256: sha(model), license: 'test' }];
    const [line] = await downloadModelsCommand([], { dir: out }, fetch, sources);
    expect(line).toMatch(/^conv\s+downloaded .*conv\.onnx \(0\.0 MB, sha256 ok, test\)/);
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
    await expect(downloadModelsCommand(['resnet'], { dir: out })).rejects.toThrow('unknown model(s) resnet; choose from shufflenet, mobilenetv2');
  });
});
