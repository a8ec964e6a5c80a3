/**
 * A hostile key list (issue 12, items 3 and 4) on real files, a real FIFO, s3rver and a real
 * redis-server: repeated keys in CRLF/whitespace/`./`/`..` spellings, comments, paths that leave
 * the root by `..`, absolute paths (/etc/shadow, /proc), a symlink out of the root, /dev/zero, a
 * FIFO and S3 URLs with `..` segments. Listed by listSource and read by fetchRef, then through a
 * one-process `cascade run` (runCommand) confined to the list's folder, then `cascade verify`:
 * one row per distinct key, exact counts, and nothing read that the roots do not allow.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Stores } from '../../pipeline/storage/stores.js';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../../cli/commands/run.js';
import { verifyCommand } from '../../cli/commands/verify.js';
import { imageErrorKind } from '../../pipeline/classify-batch.js';
import { ManifestRow } from '../../pipeline/results/manifest.js';
import { readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { ForbiddenPathError, fetchRef, isForbiddenPath } from '../../pipeline/storage/fetch-image.js';
import { isObjectNotFound } from '../../pipeline/storage/object-store.js';
import { listSource } from '../../producers/list-source.js';
import { uniquePrefix } from '../helpers/redis.js';
import { colourSpec } from '../helpers/colour-fixture.js';
import { withModels, withRedis, withS3, withS3rverCredentials, withTempDir } from '../helpers/fixtures.js';

const EXTENSIONS = ['.png', '.jpg'];

let root: string;
let keys: string;

/** Runs `fn` with stdout muted (the commands print their JSON reports there). */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await fn();
  } finally {
    process.stdout.write = write;
  }
}

const png = (r: number, g: number, b: number) =>
  sharp({ create: { width: 12, height: 10, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();

withS3rverCredentials();
const work = withTempDir('keylist');
const redis = withRedis();
const s3 = withS3({ buckets: ['klist'] });
const models = withModels(work);

beforeAll(async () => {
  root = join(work.path, 'root');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(join(work.path, 'outside'));
  await writeFile(join(root, 'red.png'), await png(255, 0, 0));
  await writeFile(join(root, 'grey.png'), await png(128, 128, 128));
  await writeFile(join(root, 'sub', 'blue.png'), await png(0, 0, 255));
  // A valid image outside the root: readable, so only the confinement can refuse it.
  await writeFile(join(work.path, 'outside', 'secret.png'), await png(0, 255, 0));
  await symlink(join(work.path, 'outside', 'secret.png'), join(root, 'escape.png'));
  await symlink('red.png', join(root, 'alias.png'));
  execFileSync('mkfifo', [join(root, 'fifo.png')]);
  const objects: Array<[string, number, number, number]> = [
    ['imgs/s-red.png', 255, 0, 0],
    ['imgs/s-grey.png', 96, 96, 96],
    ['secret.png', 0, 255, 0],
  ];
  for (const [Key, r, g, b] of objects) await s3.client.send(new PutObjectCommand({ Bucket: 'klist', Key, Body: await png(r, g, b) }));
  keys = join(root, 'keys.txt');
  const lines = [
    '# hostile and repeated keys',
    'red.png',
    'red.png', // repeat
    '  red.png', // repeat
    'red.png \t', // repeat
    './red.png', // repeat
    'grey.png',
    'sub/blue.png',
    'sub/../grey.png', // repeat
    '',
    'alias.png', // a symlink that stays inside: its own key, labelled
    'missing.png',
    '   ',
    '../outside/secret.png',
    'sub/../../outside/secret.png', // repeat
    '../../../../../../../../../etc/passwd',
    '/etc/shadow',
    '/proc/self/environ',
    'escape.png',
    '/dev/zero',
    'fifo.png',
    '# S3',
    's3://klist/imgs/s-red.png',
    'S3://klist/imgs/s-red.png', // repeat
    's3://klist/imgs/s-grey.png',
    's3://klist/imgs/../secret.png',
    's3://klist/../klist/imgs/s-red.png',
    's3://klist/imgs/missing.png',
  ];
  await writeFile(keys, `${lines.join('\r\n')}\r\n`);
});

const local = (...p: string[]) => join(root, ...p);
const OK = () => [local('red.png'), local('grey.png'), local('sub', 'blue.png'), local('alias.png'), 's3://klist/imgs/s-red.png', 's3://klist/imgs/s-grey.png'];
const NOT_FOUND = () => [local('missing.png'), 's3://klist/imgs/missing.png'];
const FORBIDDEN = () => [
  join(work.path, 'outside', 'secret.png'),
  '/etc/passwd',
  '/etc/shadow',
  '/proc/self/environ',
  local('escape.png'),
  '/dev/zero',
  local('fifo.png'),
  's3://klist/imgs/../secret.png',
  's3://klist/../klist/imgs/s-red.png',
];
const DISTINCT = 17;
const REPEATS = 7;

describe('a hostile key list', () => {
  it('lists each key once, normalised, and reports the repeats', async () => {
    const repeats: string[] = [];
    const refs: string[] = [];
    for await (const ref of listSource(keys, { extensions: EXTENSIONS, stores: s3.stores, onDuplicate: (_ref, where) => repeats.push(where) })) refs.push(ref);
    expect(refs).toHaveLength(DISTINCT);
    expect(new Set(refs).size).toBe(DISTINCT);
    expect([...refs].sort()).toEqual([...OK(), ...NOT_FOUND(), ...FORBIDDEN()].sort());
    expect(repeats).toEqual([3, 4, 5, 6, 9, 15, 24].map((n) => `${keys}:${n}`));
  });

  it('fetchRef reads only what the roots allow, and sends no S3 request for a .. key', async () => {
    const sent: string[] = [];
    const client = s3.makeClient();
    const counted = new Stores({}, { clients: { s3: client } });
    client.middlewareStack.add(
      (next) => async (args) => {
        sent.push(String((args.input as { Key?: string }).Key));
        return next(args);
      },
      { step: 'initialize' },
    );
    const outcomes: Record<string, string[]> = { ok: [], 'not-found': [], forbidden: [] };
    for await (const ref of listSource(keys, { extensions: EXTENSIONS, stores: s3.stores })) {
      const kind = await fetchRef(ref, counted, { localRoots: [root], maxBytes: 1 << 20, retryForMs: 0 }).then(
        () => 'ok',
        (err: unknown) => (isForbiddenPath(err) ? 'forbidden' : isObjectNotFound(err) ? 'not-found' : `unexpected: ${(err as Error).message}`),
      );
      outcomes[kind] ??= [];
      outcomes[kind].push(ref);
    }
    expect(outcomes.ok!.sort()).toEqual(OK().sort());
    expect(outcomes['not-found']!.sort()).toEqual(NOT_FOUND().sort());
    expect(outcomes.forbidden!.sort()).toEqual(FORBIDDEN().sort());
    expect(Object.keys(outcomes).sort()).toEqual(['forbidden', 'not-found', 'ok']);
    expect(sent.sort()).toEqual(['imgs/missing.png', 'imgs/s-grey.png', 'imgs/s-red.png']);
    // Without roots (a trusted caller) a FIFO is still refused at once, never opened for a writer.
    await expect(fetchRef(local('fifo.png'), counted)).rejects.toThrow(/not a regular file \(a FIFO\)/);
    client.destroy();
  });

  it('cascade run over it: one row per distinct key, forbidden rows for every escape; cascade verify agrees', async () => {
    const config = join(work.path, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        little: colourSpec(models.colourLittle, models.labels),
        big: colourSpec(models.colourBig, models.labels),
        threshold: 0.9,
        batchSize: 4,
        redisUrl: redis.url,
        prefix: uniquePrefix('keylist'),
        s3: { endpoint: s3.endpoint, forcePathStyle: true },
        sources: { localRoots: ['root'] }, // relative to the config file
      }),
    );
    const out = join(work.path, 'out');
    const summary = await quietly(() => runCommand(keys, { out, config, progress: false, json: true }));
    expect(summary).toMatchObject({
      images: DISTINCT,
      errors: NOT_FOUND().length + FORBIDDEN().length,
      errorsByKind: { 'not-found': NOT_FOUND().length, forbidden: FORBIDDEN().length },
    });
    expect(summary.duplicatesDropped).toBe(REPEATS);

    const rows = (await readFile(join(out, 'manifest.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => ManifestRow.parse(JSON.parse(l)));
    expect(rows).toHaveLength(DISTINCT);
    const byKey = new Map(rows.map((r) => [r.key, r]));
    expect(byKey.size).toBe(DISTINCT);
    for (const k of OK()) expect(byKey.get(k)?.error, k).toBeNull();
    expect(byKey.get(local('alias.png'))?.labelName).toBe('red');
    for (const k of NOT_FOUND()) expect(byKey.get(k)?.error?.kind, k).toBe('not-found');
    expect(imageErrorKind(new ForbiddenPathError('x', 'y'))).toBe('forbidden');
    for (const k of FORBIDDEN()) {
      expect(byKey.get(k)?.error, k).toMatchObject({ kind: 'forbidden', message: expect.stringMatching(/^Forbidden: /) });
    }
    // Nothing of a refused file reached a row.
    expect(JSON.stringify(rows)).not.toMatch(/root:|PATH=|HOME=/);

    const report = await verifyManifest(listSource(keys, { extensions: EXTENSIONS, stores: s3.stores }), readManifestLines(out, s3.stores));
    expect(report).toMatchObject({
      ok: true,
      sourceKeys: DISTINCT,
      manifestRows: DISTINCT,
      errorRows: NOT_FOUND().length + FORBIDDEN().length,
      counts: { missing: 0, duplicate: 0, unknown: 0, invalid: 0 },
    });

    const cli = await quietly(() => verifyCommand({ manifest: out, source: keys, config, json: true }));
    expect(process.exitCode ?? 0).toBe(0);
    expect(cli).toMatchObject({
      ok: true,
      sourceKeys: DISTINCT,
      sourceDuplicates: REPEATS,
      manifestRows: DISTINCT,
      counts: { missing: 0, duplicate: 0, unknown: 0, invalid: 0 },
    });
  });
});
