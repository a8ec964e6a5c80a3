/**
 * The numerics setting of a run: 'auto' by default, chosen in the config file or with
 * --numerics (the flag wins), refused with the allowed values otherwise; the reference numerics
 * a run is planned and calibrated with. What 'auto' does with a model: integration/numerics-auto.test.ts.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { cascadeOptions, loadCascadeConfig } from '../../cli/cascade-flags.js';
import { ConfigError } from '../../config/load-config.js';
import { referenceNumerics } from '../../config/schema.js';

const number = () => (v: string) => Number(v);

describe('numerics setting', () => {
  it("defaults to 'auto'; the file sets it and --numerics wins over the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-numerics-cfg-'));
    expect((await loadCascadeConfig({ little: 'a.onnx', big: 'b.onnx' })).numerics).toBe('auto');
    const file = join(dir, 'c.yaml');
    await writeFile(file, 'little: a.onnx\nbig: b.onnx\nnumerics: native\n');
    expect((await loadCascadeConfig({ config: file })).numerics).toBe('native');
    const flags = cascadeOptions(new Command(), number).parse(['--config', file, '--numerics', 'exact'], { from: 'user' }).opts();
    expect((await loadCascadeConfig(flags)).numerics).toBe('exact');
  });

  it('refuses an unknown mode with the allowed ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-numerics-cfg-'));
    const file = join(dir, 'c.yaml');
    await writeFile(file, 'little: a.onnx\nbig: b.onnx\nnumerics: fast\n');
    const err = await loadCascadeConfig({ config: file }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/numerics: .*"auto"\|"exact"\|"native"/);
    const cmd = cascadeOptions(new Command(), number)
      .exitOverride()
      .configureOutput({ writeErr: () => {} });
    expect(() => cmd.parse(['--numerics', 'fast'], { from: 'user' })).toThrow(/Allowed choices are auto, exact, native/);
  });

  it('plans and calibrates auto runs on exact numbers', () => {
    expect([referenceNumerics('auto'), referenceNumerics('exact'), referenceNumerics('native')]).toEqual(['exact', 'exact', 'native']);
  });
});
