/**
 * Hostile sharded inputs (issue 26, item 3): a tar shard with a member over the run's byte limit,
 * member names with `..` and an absolute path, a symlink member, a sample without an image, and
 * the shard cut short inside its last member; a `.tar` that is not a tar; a shard that is missing.
 * Each becomes error rows of a completed `cascade run` (verify agrees), nothing is read outside
 * the shard, and nothing hangs. Parquet files with a missing column, a mistyped column, or that
 * are not Parquet at all are refused with one line, exit 2, before any batch is queued.
 * Real redis-server, generated models, real files.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import { CascadeError, EXIT_USAGE } from '../../config/errors.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { colourCascade } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withTempDir } from '../helpers/fixtures.js';
import { quietly } from '../helpers/quietly.js';
import { uniquePrefix } from '../helpers/redis.js';
import { parquetBytes, tarShard } from '../helpers/shard-fixture.js';

const work = withTempDir('hostile-shards');
const redis = withRedis();
const models = withModels(work);

/** The run's byte limit: the noise image is over it, the flat colours far under. */
const MAX_BYTES = 4096;

let dir: string;
let shard0: string;
let red: Buffer;

const png = (r: number, g: number, b: number) =>
  sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();

beforeAll(async () => {
  dir = join(work.path, 'hostile');
  await mkdir(dir);
  red = await png(255, 0, 0);
  const noise = await sharp(Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251)), { raw: { width: 64, height: 64, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
  expect(noise.length).toBeGreaterThan(MAX_BYTES);
  const tar = await tarShard([
    { name: 'ok.png', body: red },
    { name: 'ok.cls', body: '0' },
    { name: 'big.png', body: noise },
    { name: '../escape.jpg', body: red },
    { name: '/etc/absolute.jpg', body: red },
    { name: 'link.jpg', type: 'symlink', linkname: '/etc/passwd' },
    { name: 'notes.txt', body: 'no image here' },
    { name: 'blue.png', body: await png(0, 0, 255) },
    { name: 'cut.png', body: await png(0, 255, 0) },
  ]);
  // Cut 20 bytes into the last member's data (one 512-byte block before the two zero blocks that
  // end a tar): its header promises bytes the file no longer has.
  shard0 = join(dir, '000000.tar');
  await writeFile(shard0, tar.subarray(0, tar.length - 1024 - 512 + 20));
  await writeFile(join(dir, '000001.tar'), '<html>not a tar</html>'.repeat(40));
  // 000002.tar is missing.
});

async function config(name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(work.path, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify(
      colourCascade(models, {
        tensorCacheMb: 0,
        limits: { maxBytes: MAX_BYTES, maxPixels: 1_000_000 },
        redisUrl: redis.url,
        prefix: uniquePrefix(name),
        ...extra,
      }),
    ),
  );
  return file;
}

describe('hostile tar shards', () => {
  it('become error rows of a run that completes, one row per sample; verify agrees', async () => {
    const source = join(dir, '{000000..000002}.tar');
    const cfg = await config('tar');
    const out = join(work.path, 'out-tar');
    const summary = await quietly(() => runCommand(source, { out, config: cfg, progress: false, json: true }));
    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    const s0 = (key: string) => `${shard0}#${key}`;
    const byKey = new Map(rows.map((r) => [r.key, r]));
    expect(rows.map((r) => r.key)).toEqual([
      s0('ok'),
      s0('big'),
      s0('../escape'),
      s0('/etc/absolute'),
      s0('link'),
      s0('notes'),
      s0('blue'),
      s0('cut'),
      expect.stringMatching(new RegExp(`^${shard0.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#@\\d+$`)),
      `${join(dir, '000001.tar')}#@0`,
      `${join(dir, '000002.tar')}#@0`,
    ]);
    expect(byKey.get(s0('ok'))).toMatchObject({ labelName: 'red', error: null });
    expect(byKey.get(s0('blue'))).toMatchObject({ labelName: 'blue', error: null });
    expect(byKey.get(s0('big'))?.error).toMatchObject({ kind: 'too-large', message: expect.stringMatching(/over the 4096-byte limit/) });
    expect(byKey.get(s0('../escape'))?.error).toMatchObject({ kind: 'forbidden', message: expect.stringMatching(/'\.\.' segment/) });
    expect(byKey.get(s0('/etc/absolute'))?.error).toMatchObject({ kind: 'forbidden', message: expect.stringMatching(/absolute path/) });
    expect(byKey.get(s0('link'))?.error).toMatchObject({ kind: 'forbidden', message: expect.stringMatching(/is a symlink, not a file/) });
    expect(byKey.get(s0('notes'))?.error).toMatchObject({ kind: 'decode', message: expect.stringMatching(/no image member/) });
    expect(byKey.get(s0('cut'))?.error).toMatchObject({ kind: 'decode', message: expect.stringMatching(/^Truncated: /) });
    expect(rows[8]!.error).toMatchObject({ kind: 'decode', message: expect.stringMatching(/Unexpected end of data/) });
    expect(rows[9]!.error).toMatchObject({ kind: 'decode', message: expect.stringMatching(/Invalid tar header/) });
    expect(rows[10]!.error).toMatchObject({ kind: 'not-found' });
    expect(summary).toMatchObject({ images: 11, errors: 9, errorsByKind: { 'too-large': 1, forbidden: 3, decode: 4, 'not-found': 1 } });
    // Nothing outside the shard reached a row.
    expect(JSON.stringify(rows)).not.toMatch(/root:/);

    const report = await quietly(() => verifyCommand({ manifest: out, source, config: cfg, json: true }));
    expect(report).toMatchObject({ ok: true, manifestRows: 11, errorRows: 9 });
  });
});

describe('hostile Parquet files', () => {
  beforeAll(async () => {
    await writeFile(join(dir, 'no-image.parquet'), parquetBytes([{ name: 'key', data: ['a'], type: 'STRING' }]));
    await writeFile(
      join(dir, 'int-image.parquet'),
      parquetBytes([
        { name: 'key', data: ['a'], type: 'STRING' },
        { name: 'jpg', data: [7], type: 'INT32' },
      ]),
    );
    await writeFile(join(dir, 'fake.parquet'), red);
  });

  const cases: Array<[string, string, Record<string, string>, RegExp]> = [
    ['a missing column', 'no-image.parquet', {}, /no-image\.parquet has no image column \(jpg, jpeg, png, webp, image\) and no url column \(columns: key\)/],
    ['a named column that is not there', 'int-image.parquet', { imageColumn: 'photo' }, /int-image\.parquet has no column "photo" \(columns: key, jpg\)/],
    ['a mistyped column', 'int-image.parquet', {}, /int-image\.parquet: column "jpg" is INT32, not binary \(BYTE_ARRAY\)/],
    ['bytes that are not Parquet', 'fake.parquet', {}, /fake\.parquet is not a Parquet file: /],
  ];
  for (const [what, file, flags, message] of cases) {
    it(`${what}: one line, exit 2, nothing claimed or queued`, async () => {
      const cfg = await config(`pq-${file}`);
      const out = join(work.path, `out-${file}`);
      // The error main prints as `cascade: <message>` and exits with.
      const err = await quietly(() => runCommand(join(dir, file), { out, config: cfg, progress: false, json: true, ...flags })).then(
        () => null,
        (e: unknown) => e as CascadeError,
      );
      expect(err).toBeInstanceOf(CascadeError);
      expect(err!.exitCode).toBe(EXIT_USAGE);
      expect(err!.message).toMatch(message);
      expect(err!.message).not.toContain('\n');
      // Refused in the preflight: the output location was never claimed.
      await expect(readFile(join(out, '_cascade', 'run.json'))).rejects.toThrow(/ENOENT/);
    });
  }
});
