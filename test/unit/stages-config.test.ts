/** The `stages:` config form: default names, equivalence with little/big/threshold, paths relative to the file, and every refusal. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/load-config.js';
import { configuredStages } from '../../config/stages.js';
import { allRoles } from '../../workers/cascade-runtime.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { writeTestModels, type TestModels } from '../helpers/test-models.js';

let dir: string;
let models: TestModels;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-stages-config-'));
  models = await writeTestModels(join(dir, 'models'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ batchSize: 4, ...config }));
  return file;
}

const threeStages = () => [
  { model: colourSpec(models.colourLittle, models.labels), threshold: 0.9 },
  { name: 'mid', model: colourSpec(models.colourBig, models.labels), threshold: 0.9 },
  { model: colourSpec(models.colourBig, models.labels) },
];

describe('stages config', () => {
  it('names stages little, stage<i>, big by default and fills little/big/threshold', async () => {
    const stages = threeStages();
    delete (stages[1] as { name?: string }).name;
    const config = await loadConfig({ file: await writeConfig({ stages }), env: {} });
    expect(configuredStages(config).map((s) => [s.name, s.threshold])).toEqual([
      ['little', 0.9],
      ['stage1', 0.9],
      ['big', null],
    ]);
    expect(allRoles(config)).toEqual(['little', 'stage1', 'big', 'merge']);
    expect(config.little.path).toBe(models.colourLittle);
    expect(config.big.path).toBe(models.colourBig);
    expect(config.threshold).toBe(0.9);
  });

  it('a two-entry stages list is the same cascade as little/big/threshold', async () => {
    const viaStages = await loadConfig({ file: await writeConfig({ stages: [threeStages()[0], threeStages()[2]] }), env: {} });
    const classic = await loadConfig({
      file: await writeConfig({ little: colourSpec(models.colourLittle, models.labels), big: colourSpec(models.colourBig, models.labels), threshold: 0.9 }),
      env: {},
    });
    expect(configuredStages(viaStages)).toEqual(configuredStages(classic));
  });

  it('resolves stage model files relative to the config file', async () => {
    const specFile = join(dir, 'models', 'little-spec.json');
    await writeFile(specFile, JSON.stringify({ ...colourSpec('colour-little.onnx', 'labels.txt') }));
    const stages = threeStages();
    stages[0]!.model = 'models/little-spec.json' as never;
    const config = await loadConfig({ file: await writeConfig({ stages }), env: {} });
    expect(configuredStages(config)[0]!.spec.path).toBe(models.colourLittle);
  });

  const bad: Array<[string, (s: ReturnType<typeof threeStages>) => unknown, RegExp]> = [
    [
      'a threshold on the last stage',
      (s) => [s[0], s[1], { ...s[2], threshold: 0.5 }],
      /stages\.2\.threshold: the last stage accepts every image, so it takes no threshold \(got 0\.5\)/,
    ],
    [
      'a middle stage without threshold',
      (s) => [s[0], { ...s[1], threshold: undefined }, s[2]],
      /stages\.1\.threshold: every stage but the last needs a threshold/,
    ],
    ['a repeated name', (s) => [s[0], { ...s[1], name: 'big' }, s[2]], /stages\.2\.name: stage name "big" is used twice/],
    ['an unsafe name', (s) => [s[0], { ...s[1], name: 'a:b' }, s[2]], /stages\.1\.name: stage names use letters, digits/],
    ['the reserved name merge', (s) => [s[0], { ...s[1], name: 'merge' }, s[2]], /stages\.1\.name: the stage names "merge" and "scheduler" are reserved/],
    [
      'the reserved name scheduler',
      (s) => [s[0], { ...s[1], name: 'scheduler' }, s[2]],
      /stages\.1\.name: the stage names "merge" and "scheduler" are reserved/,
    ],
    ['a single stage', (s) => [s[2]], /stages: a cascade needs at least 2 stages/],
  ];
  for (const [what, make, message] of bad) {
    it(`refuses ${what}`, async () => {
      const file = await writeConfig({ stages: make(threeStages()) });
      await expect(loadConfig({ file, env: {} })).rejects.toThrow(message);
    });
  }

  it('refuses stages mixed with little/big/threshold, naming the flag', async () => {
    const file = await writeConfig({ stages: threeStages() });
    const err = await loadConfig({ file, env: {}, overrides: { threshold: 0.4 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/stages: given together with --threshold/);
    await expect(loadConfig({ file: await writeConfig({ stages: threeStages(), big: models.colourBig }), env: {} })).rejects.toThrow(
      /stages: given together with 'big:'/,
    );
  });
});
