/**
 * The calibration fixture of the generated colour models: twelve 8×8 images whose little and big
 * answers are known (test/integration/calibrate-cli.test.ts explains every threshold), their
 * ground-truth CSV, model specs with fixed GMACs, and timings seeded so cost verdicts do not hang
 * on this machine's noise. Used loose (calibrate-cli) and as shards (calibrate-shards).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { colourSpec } from './colour-fixture.js';
import { seedTiming } from './seed-timings.js';
import { LABELS, type TestModels } from './test-models.js';

/** Class index by label name of the colour models. */
export const CLASS = Object.fromEntries(LABELS.map((l, i) => [l, i])) as Record<(typeof LABELS)[number], number>;

/** A fixture image: its path relative to the folder, colour and true class. */
export interface CalibrationImage {
  name: string;
  rgb: [number, number, number];
  truth: keyof typeof CLASS;
}

export const CALIBRATION_IMAGES: CalibrationImage[] = [
  { name: 'red-1.png', rgb: [255, 0, 0], truth: 'red' },
  { name: 'red-2.png', rgb: [255, 0, 0], truth: 'red' },
  { name: 'green-1.png', rgb: [0, 255, 0], truth: 'green' },
  { name: 'green-2.png', rgb: [0, 255, 0], truth: 'green' },
  { name: 'sub/blue-1.png', rgb: [0, 0, 255], truth: 'blue' },
  { name: 'sub/blue-2.png', rgb: [0, 0, 255], truth: 'blue' },
  { name: 'dark-red-1.png', rgb: [128, 0, 0], truth: 'red' },
  { name: 'dark-red-2.png', rgb: [128, 0, 0], truth: 'red' },
  ...[64, 96, 128, 160].map((v) => ({ name: `grey-${v}.png`, rgb: [v, v, v] as [number, number, number], truth: 'other' as const })),
];

/** An 8×8 PNG of one colour. */
export function colourPng([r, g, b]: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();
}

/** Everything a calibration of the fixture reads, written under `dir`. */
export interface CalibrationFixture {
  /** The images' folder. */
  images: string;
  /** Their ground truth (file,class_index,name). */
  labels: string;
  littleSpec: string;
  bigSpec: string;
  convSpec: string;
  /** A probability and timing cache with the models' timings seeded. */
  cache: string;
}

/** A colour model's spec file with fixed GMACs. */
export async function colourSpecFile(dir: string, name: string, model: string, labels: string, gmacs: number): Promise<string> {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ ...colourSpec(model, labels), gmacs }));
  return file;
}

/**
 * Known costs instead of this machine's noise: little 1 ms, big 10 ms, conv 2 ms per image, so
 * every cascade the tests certify pays.
 */
export async function seedColourTimings(cache: string, models: TestModels): Promise<void> {
  await seedTiming(cache, models.colourLittle, { decode: 0.5, infer: 0.5 });
  await seedTiming(cache, models.colourBig, { decode: 0.5, infer: 9.5 });
  await seedTiming(cache, models.convNet, { decode: 0.5, infer: 1.5 });
}

/** Write the fixture under `dir`: images, labels CSV, specs (little 0.1, big 1, conv 0.2 GMACs), seeded cache. */
export async function writeCalibrationFixture(dir: string, models: TestModels): Promise<CalibrationFixture> {
  const images = join(dir, 'images');
  for (const img of CALIBRATION_IMAGES) {
    await mkdir(join(images, img.name, '..'), { recursive: true });
    await writeFile(join(images, img.name), await colourPng(img.rgb));
  }
  const labels = join(dir, 'groundtruth.csv');
  await writeFile(labels, `file,class_index,name\n${CALIBRATION_IMAGES.map((i) => `${i.name},${CLASS[i.truth]},${i.truth}`).join('\n')}\n`);
  const cache = join(dir, 'cache');
  await seedColourTimings(cache, models);
  return {
    images,
    labels,
    littleSpec: await colourSpecFile(dir, 'little', models.colourLittle, models.labels, 0.1),
    bigSpec: await colourSpecFile(dir, 'big', models.colourBig, models.labels, 1),
    convSpec: await colourSpecFile(dir, 'conv', models.convNet, models.labels, 0.2),
    cache,
  };
}
