/** `cascade models inspect` through the built CLI (bin/cascade.js, a child process) on a generated model. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
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
  });
});
