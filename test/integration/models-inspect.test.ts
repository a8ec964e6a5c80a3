/** `cascade models inspect` through the built CLI (bin/cascade.js, a child process) on a generated model. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-inspect-'));
  models = await writeTestModels(dir);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('cascade models inspect', () => {
  it('prints I/O and the MAC count from the graph', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/cascade.js', 'models', 'inspect', models.convNet, '--json']);
    const report = JSON.parse(stdout);
    expect(report.io).toMatchObject({ inputDtype: 'float32', height: 8, width: 8 });
    expect(report.gmacs * 1e9).toBeCloseTo(13856, 3);
    expect(report.unresolved).toEqual([]);
    // Where the nodes ran: all on the CPU provider here, in one segment, with no host/device copy.
    expect(report.placement).toMatchObject({ segments: 1, copies: 0 });
    expect(report.placement.providers.map((p: { provider: string }) => p.provider)).toEqual(['cpu']);
  });

  it('refuses an unknown provider with one line, exit 2', async () => {
    const err = await promisify(execFile)(process.execPath, ['bin/cascade.js', 'models', 'inspect', models.convNet, '--providers', 'gpu9']).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/^cascade: --providers: expected a comma-separated list of cpu, cuda, webgpu/);
  });

  it('a missing model file is one precise line, exit 2', async () => {
    const missing = join(dir, 'no-such-model.onnx');
    const err = await promisify(execFile)(process.execPath, ['bin/cascade.js', 'models', 'inspect', missing]).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr).toBe(`cascade: cannot read model ${missing}: no such file (ENOENT)\n`);
  });

  it('a file that is not an ONNX model is one line naming it, exit 2', async () => {
    const notOnnx = join(dir, 'notes.onnx');
    await writeFile(notOnnx, 'these are notes, not a model\n');
    const err = await promisify(execFile)(process.execPath, ['bin/cascade.js', 'models', 'inspect', notOnnx]).catch((e) => e);
    expect(err.code).toBe(2);
    expect(err.stderr.startsWith(`cascade: ${notOnnx} is not an ONNX model: `), err.stderr).toBe(true);
    expect(err.stderr.split('\n')).toHaveLength(2);
  });
});
