import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fleetSettings } from '../../cli/fleet-settings.js';
import { ConfigError, expandEnv, loadConfig, readStructured } from '../../config/load-config.js';
import { ModelSpec } from '../../config/schema.js';

describe('ModelSpec preprocessing', () => {
  it('defaults to the torch preset', () => {
    expect(ModelSpec.parse({ path: 'm.onnx' }).preprocess).toMatchObject({ colorOrder: 'RGB', scale: 1 / 255, mean: [0.485, 0.456, 0.406] });
  });
  it('keeps a preset’s values under partial overrides', () => {
    const p = ModelSpec.parse({ path: 'm.onnx', preprocess: { preset: 'caffe', kernel: 'cubic' } }).preprocess;
    expect(p).toMatchObject({ colorOrder: 'BGR', scale: 1, mean: [103.939, 116.779, 123.68], std: [1, 1, 1], kernel: 'cubic' });
  });
  it('names a bad field', () => {
    const r = ModelSpec.safeParse({ path: 'm.onnx', preprocess: { scale: -1 } });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['preprocess', 'scale']);
  });
  it('refuses unknown keys', () => {
    expect(ModelSpec.safeParse({ path: 'm.onnx', preprocess: { colour: 'RGB' } }).success).toBe(false);
  });
});

describe('loadConfig', () => {
  it('merges file, environment and flags, resolving model paths against the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-cfg-'));
    await writeFile(join(dir, 'little.yaml'), 'path: ${MODELS:-models}/little.onnx\npreprocess: caffe\n');
    await writeFile(join(dir, 'c.yaml'), 'little: little.yaml\nbig: { path: big.onnx }\nthreshold: 0.7\nbatchSize: 16\n');
    const c = await loadConfig({ file: join(dir, 'c.yaml'), env: { REDIS_URL: 'redis://x:1' }, overrides: { threshold: 0.8 }, cwd: '/' });
    expect(c.little.path).toBe(join(dir, 'models', 'little.onnx'));
    expect(c.little.preprocess.colorOrder).toBe('BGR');
    expect(c.big.path).toBe(join(dir, 'big.onnx'));
    expect(c).toMatchObject({ threshold: 0.8, batchSize: 16, redisUrl: 'redis://x:1' });
  });
  it('explains every bad field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-cfg-'));
    await writeFile(join(dir, 'c.json'), JSON.stringify({ little: 'a.onnx', big: 'b.onnx', threshold: 2, batchSize: 0 }));
    const err = await loadConfig({ file: join(dir, 'c.json'), env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/threshold: Too big/);
    expect((err as Error).message).toMatch(/batchSize: Too small/);
  });
  it('asks for missing models', async () => {
    await expect(loadConfig({ env: {} })).rejects.toThrow(/no little model/);
  });
  it('expands ${VAR:-default}', () => {
    expect(expandEnv('${A:-x}/${B}', { B: 'b' })).toBe('x/b');
    expect(() => expandEnv('${NOPE}', {})).toThrow(/NOPE is not set/);
  });
});

describe('readStructured (every config reader)', () => {
  it('parses JSON by extension, YAML otherwise, and names the file as shown on any problem', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-cfg-'));
    await writeFile(join(dir, 'a.json'), '{"prefix": "p"}');
    await writeFile(join(dir, 'a.yaml'), 'prefix: p\n');
    await writeFile(join(dir, 'empty.yaml'), '');
    await writeFile(join(dir, 'bad.json'), '{"prefix": ');
    await writeFile(join(dir, 'bad.yaml'), 'prefix: [p\n');
    expect(await readStructured(join(dir, 'a.json'))).toEqual({ prefix: 'p' });
    expect(await readStructured(join(dir, 'a.yaml'))).toEqual({ prefix: 'p' });
    expect(await readStructured(join(dir, 'empty.yaml'))).toBeNull();
    await expect(readStructured(join(dir, 'bad.json'), 'bad.json')).rejects.toThrow(/^bad\.json is not valid JSON: /);
    await expect(readStructured(join(dir, 'bad.yaml'))).rejects.toThrow(new RegExp(`^${join(dir, 'bad.yaml')} is not valid YAML: `));
    await expect(readStructured(join(dir, 'none.yaml'), 'none.yaml')).rejects.toThrow(/^cannot read none\.yaml: /);
    await expect(readStructured(join(dir, 'none.yaml'))).rejects.toBeInstanceOf(ConfigError);
    // The run and the Redis-only commands read the same file the same way.
    await expect(loadConfig({ file: join(dir, 'bad.json'), env: {} })).rejects.toThrow(/bad\.json is not valid JSON/);
    await expect(fleetSettings({ config: join(dir, 'bad.json') }, {})).rejects.toThrow(/bad\.json is not valid JSON/);
    expect(await fleetSettings({ config: join(dir, 'empty.yaml') }, { REDIS_URL: 'redis://r:1' })).toEqual({
      redisUrl: 'redis://r:1',
      prefix: expect.any(String),
      shards: 1,
    });
  });
});
