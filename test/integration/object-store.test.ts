import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { AzureBlobStore } from '../../pipeline/storage/azure-store.js';
import { fetchRef } from '../../pipeline/storage/fetch-image.js';
import { LocalStore } from '../../pipeline/storage/local-store.js';
import {
  InvalidKeyError,
  type ObjectStore,
  ObjectNotFoundError,
  ObjectTooLargeError,
  compareKeys,
  isObjectNotFound,
  isObjectTooLarge,
  readJson,
  readLines,
} from '../../pipeline/storage/object-store.js';
import { S3Store, makeS3Client, s3Scheme } from '../../pipeline/storage/s3-store.js';
import { type StoreSettings, Stores } from '../../pipeline/storage/stores.js';
import { type TestAzurite, startAzurite } from '../helpers/azurite.js';
import { startOutageProxy } from '../helpers/outage-proxy.js';
import { type TestS3, startS3 } from '../helpers/s3.js';

let s3: TestS3;
let azurite: TestAzurite;
let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-store-test-'));
  [s3, azurite] = await Promise.all([startS3(), startAzurite({ containers: ['store-test'] })]);
  await s3.createBucket('store-test');
});

afterAll(async () => {
  await s3?.stop();
  await azurite?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function collect(store: ObjectStore, prefix?: string) {
  const out: { key: string; size: number }[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

let storeCount = 0;
const stores: Record<string, () => Promise<ObjectStore>> = {
  local: async () => new LocalStore(path.join(tmp, `local-${++storeCount}`)),
  s3: async () => new S3Store({ client: s3.client, bucket: 'store-test', prefix: `run-${++storeCount}` }),
  az: async () => new AzureBlobStore({ client: azurite.client, container: 'store-test', prefix: `run-${++storeCount}` }),
};

describe.each(Object.keys(stores))('%s store contract', (kind) => {
  let store: ObjectStore;
  beforeAll(async () => {
    store = await stores[kind]!();
  });

  it('round-trips buffers and strings, and overwrites', async () => {
    await store.put('a/b/c.bin', Buffer.from([0, 1, 2, 255]));
    expect(await store.get('a/b/c.bin')).toEqual(Buffer.from([0, 1, 2, 255]));
    await store.put('a/b/c.bin', 'text ✓');
    expect((await store.get('a/b/c.bin')).toString('utf8')).toBe('text ✓');
    await store.put('empty', Buffer.alloc(0));
    expect((await store.get('empty')).length).toBe(0);
    await store.put('empty-string', '');
    expect((await store.get('empty-string')).length).toBe(0);
  });

  it('streams a body larger than one multipart part without holding it whole', async () => {
    const chunk = `${'x'.repeat(1024 * 1024 - 1)}\n`;
    async function* body() {
      for (let i = 0; i < 9; i++) yield i % 2 ? Buffer.from(chunk) : chunk;
    }
    await store.putStream('big/stream.txt', body());
    const got = await store.get('big/stream.txt');
    expect(got.length).toBe(9 * 1024 * 1024);
    expect(got.subarray(0, 4).toString()).toBe('xxxx');
    await store.putStream('big/empty.txt', (async function* () {})());
    expect((await store.get('big/empty.txt')).length).toBe(0);
  });

  it('raises ObjectNotFoundError for missing keys', async () => {
    const err = await store.get('no/such/key.jpg').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect(isObjectNotFound(err)).toBe(true);
    expect((err as Error).message).toMatch(/Object not found: .*no\/such\/key\.jpg/);
  });

  it('enforces maxBytes', async () => {
    await store.put('big.bin', Buffer.alloc(1000, 7));
    expect((await store.get('big.bin', { maxBytes: 1000 })).length).toBe(1000);
    const err = await store.get('big.bin', { maxBytes: 999 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectTooLargeError);
    expect(isObjectTooLarge(err)).toBe(true);
    expect(err).toMatchObject({ size: 1000, maxBytes: 999, code: 'OBJECT_TOO_LARGE' });
  });

  it('lists in key byte order, with plain string prefixes', async () => {
    const keys = ['l/a.jpg', 'l/a-b.jpg', 'l/a/z.jpg', 'l/a/b/c.jpg', 'l/b.jpg', 'l/B.jpg', 'l/é.jpg', 'l/😀.jpg', 'l/\uFFFD.jpg', 'l/ab/x.jpg'];
    for (const k of keys) await store.put(k, k);
    // Real S3 lists in UTF-8 byte order; s3rver walks its directory tree instead ("a/..." before
    // "a-b") and Azurite sorts by UTF-16 ("😀" before U+FFFD), so against them only the set of
    // keys can be checked.
    const ordered = (ks: string[]) => (kind === 'local' ? ks : [...ks].sort(compareKeys));
    const listed = await collect(store, 'l/');
    expect(ordered(listed.map((o) => o.key))).toEqual([...keys].sort(compareKeys));
    expect(listed.find((o) => o.key === 'l/a.jpg')?.size).toBe(Buffer.byteLength('l/a.jpg'));
    // "l/a" is a string prefix, as in S3: it matches l/a.jpg, l/a-b.jpg, l/a/... and l/ab/...
    expect(ordered((await collect(store, 'l/a')).map((o) => o.key))).toEqual(
      ['l/a.jpg', 'l/a-b.jpg', 'l/a/z.jpg', 'l/a/b/c.jpg', 'l/ab/x.jpg'].sort(compareKeys),
    );
    expect((await collect(store, 'l/a/')).map((o) => o.key)).toEqual(['l/a/b/c.jpg', 'l/a/z.jpg']);
    expect(await collect(store, 'nothing/here/')).toEqual([]);
  });

  it('lists only the keys after `after` (a resumed listing), also when `after` lies outside the prefix', async () => {
    const keys = ['r/a.jpg', 'r/a/b/c.jpg', 'r/a/z.jpg', 'r/b.jpg', 'r/bb/x.jpg', 'r/c.jpg'];
    for (const k of keys) await store.put(k, k);
    const listAfter = async (prefix: string, from: string) => {
      const out: string[] = [];
      for await (const o of store.list(prefix, { after: from })) out.push(o.key);
      return out.sort(compareKeys);
    };
    for (const from of ['r/a/b/c.jpg', 'r/a/z.jpg', 'r/b.jpg', 'r/b.jpg~', 'r/c.jpg']) {
      expect(await listAfter('r/', from), from).toEqual(keys.filter((k) => compareKeys(k, from) > 0).sort(compareKeys));
    }
    expect(await listAfter('r/a/', 'r/')).toEqual(['r/a/b/c.jpg', 'r/a/z.jpg']);
    expect(await listAfter('r/a/', 'r/b')).toEqual([]);
  });

  it('lists the common prefixes one level below a prefix (split listing), or has no listPrefixes and is listed in one sequence (az)', async () => {
    if (kind === 'az') {
      // List Blobs has no StartAfter here: a range starting mid-container would read from its start.
      expect(store.listPrefixes).toBeUndefined();
      return;
    }
    // `d2/1.jpg`, not only `d2/x/1.jpg`: s3rver skips the folders below a common prefix while
    // looking for it, so it finds a common prefix only by a key directly under it (S3 finds both).
    const keys = ['d/a.jpg', 'd/a/x.jpg', 'd/a/y/z.jpg', 'd/b c/1.jpg', 'd/é/1.jpg', 'd/z.jpg', 'd2/1.jpg', 'd2/x/1.jpg'];
    for (const k of keys) await store.put(k, k);
    expect(await store.listPrefixes!('d/')).toEqual(['d/a/', 'd/b c/', 'd/é/']);
    expect(await store.listPrefixes!('d/a/')).toEqual(['d/a/y/']);
    expect(await store.listPrefixes!('d/a/y/')).toEqual([]);
    expect(await store.listPrefixes!('d')).toEqual(['d/', 'd2/']);
    expect(await store.listPrefixes!('nothing/here/')).toEqual([]);
  });

  it('getStream streams an object, and a missing one is an ObjectNotFoundError before any byte', async () => {
    const chunk = `${'y'.repeat(300_000)}\n`;
    await store.put('s/lines.txt', chunk.repeat(4));
    const chunks: Buffer[] = [];
    for await (const c of await store.getStream('s/lines.txt')) chunks.push(c as Buffer);
    // More than one chunk: the object was read in pieces, not handed over whole.
    expect(chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).toString()).toBe(chunk.repeat(4));
    const lines: string[] = [];
    for await (const line of readLines(await store.getStream('s/lines.txt'))) lines.push(line);
    expect(lines.map((l) => l.length)).toEqual([300_000, 300_000, 300_000, 300_000]);
    await store.put('s/empty', '');
    const empty: Buffer[] = [];
    for await (const c of await store.getStream('s/empty')) empty.push(c as Buffer);
    expect(Buffer.concat(empty).length).toBe(0);
    const err = await store.getStream('s/no-such.txt').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect((err as Error).message).toMatch(/Object not found: .*s\/no-such\.txt/);
    // A reader that stops early lets go of the stream (and its file handle or socket).
    const stream = await store.getStream('s/lines.txt');
    for await (const _ of readLines(stream)) break;
    expect(stream.destroyed).toBe(true);
  });

  it('getRange reads [start, end) of an object, short at its end, empty past it, and refuses bad ranges', async () => {
    const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    await store.put('r/shard.tar', body);
    expect(await store.getRange('r/shard.tar', 0, 10)).toEqual(body.subarray(0, 10));
    expect(await store.getRange('r/shard.tar', 512, 700)).toEqual(body.subarray(512, 700));
    expect(await store.getRange('r/shard.tar', 990, 2000)).toEqual(body.subarray(990));
    expect((await store.getRange('r/shard.tar', 1000, 1010)).length).toBe(0);
    expect((await store.getRange('r/shard.tar', 5000, 6000)).length).toBe(0);
    expect((await store.getRange('r/shard.tar', 7, 7)).length).toBe(0);
    await store.put('r/empty', '');
    expect((await store.getRange('r/empty', 0, 10)).length).toBe(0);
    await expect(store.getRange('r/no-such.tar', 0, 10)).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getRange('r/no-such.tar', 3, 3)).rejects.toBeInstanceOf(ObjectNotFoundError);
    for (const [start, end] of [
      [-1, 4],
      [5, 4],
      [0.5, 4],
      [0, Number.POSITIVE_INFINITY],
    ] as const) {
      await expect(store.getRange('r/shard.tar', start, end)).rejects.toMatchObject({ name: 'InvalidRangeError', code: 'INVALID_RANGE' });
    }
  });

  it('readJson parses and validates, naming the key on bad content', async () => {
    const Schema = z.object({ n: z.number() });
    await store.put('j/good.json', '{"n": 3}');
    expect(await readJson(store, 'j/good.json', Schema)).toEqual({ n: 3 });
    await store.put('j/not-json.json', '{"n": ');
    await expect(readJson(store, 'j/not-json.json', Schema)).rejects.toThrow(/^j\/not-json\.json in .+ is not valid JSON: /);
    await store.put('j/wrong.json', '{"n": "three"}');
    await expect(readJson(store, 'j/wrong.json', Schema)).rejects.toThrow(/^j\/wrong\.json in .+ is not what was expected: n: /);
    await expect(readJson(store, 'j/missing.json', Schema)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('deletes, and deleting a missing key is fine', async () => {
    await store.put('d/x', 'x');
    await store.delete('d/x');
    await expect(store.get('d/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await store.delete('d/x');
  });
});

describe('LocalStore', () => {
  it('refuses keys that could escape the root, and writes nothing', async () => {
    const root = path.join(tmp, 'traversal', 'root');
    const store = new LocalStore(root);
    const bad = ['../x', 'a/../../x', 'a/..', '..', '/etc/passwd', 'a\0b', '', 'a//b', './a', 'a/./b', 'a\\..\\b', 'dir/'];
    for (const key of bad) {
      await expect(store.put(key, 'x'), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.get(key), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.delete(key), key).rejects.toBeInstanceOf(InvalidKeyError);
    }
    await expect(store.get('../x')).rejects.toThrow(/Invalid object key "\.\.\/x": '\.\.' segments are not allowed/);
    await expect(collect(store, '../')).rejects.toBeInstanceOf(InvalidKeyError);
    // Not even the root was created: every key was refused before touching the filesystem.
    await expect(fs.stat(path.join(tmp, 'traversal'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('creates directories, writes atomically and hides in-flight temp files', async () => {
    const root = path.join(tmp, 'atomic');
    const store = new LocalStore(root);
    const bodies = Array.from({ length: 20 }, (_, i) => JSON.stringify({ i, pad: 'x'.repeat(10_000) }));
    await Promise.all(bodies.map((body) => store.put('deep/dir/same.json', body)));
    // Whichever write renamed last wins, byte for byte: no torn, mixed or appended content.
    expect(bodies).toContain((await store.get('deep/dir/same.json')).toString());
    expect(await fs.readdir(path.join(root, 'deep/dir'))).toEqual(['same.json']);
    await fs.writeFile(path.join(root, 'deep/dir/.cascade-tmp-0123456789abcdef'), 'partial');
    expect((await collect(store)).map((o) => o.key)).toEqual(['deep/dir/same.json']);
  });

  it('lists a missing root as empty and treats a directory as not found', async () => {
    const store = new LocalStore(path.join(tmp, 'never-created'));
    expect(await collect(store)).toEqual([]);
    const other = new LocalStore(path.join(tmp, 'dirs'));
    await other.put('a/b.txt', 'x');
    await expect(other.get('a')).rejects.toThrow(/Object not found: .*\(it is a directory\)/);
    await expect(other.get('a/b.txt/c')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(other.getStream('a')).rejects.toThrow(/Object not found: .*\(it is a directory\)/);
    await expect(other.getStream('a/b.txt/c')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(other.getStream('../x')).rejects.toBeInstanceOf(InvalidKeyError);
    expect(other.describe()).toBe(path.join(tmp, 'dirs'));
  });
});

describe('S3Store', () => {
  it('stores under its prefix and lists keys relative to it', async () => {
    const store = new S3Store({ client: s3.client, bucket: 'store-test', prefix: 'pref/ix' });
    expect(store.describe()).toBe('s3://store-test/pref/ix/');
    await store.put('k/one.txt', '1');
    // A sibling with the same string prefix must not leak into the store.
    await s3.client.send(new PutObjectCommand({ Bucket: 'store-test', Key: 'pref/ix2/other', Body: 'x' }));
    const raw = await s3.client.send(new ListObjectsV2Command({ Bucket: 'store-test', Prefix: 'pref/' }));
    expect(raw.Contents?.map((c) => c.Key)).toEqual(['pref/ix/k/one.txt', 'pref/ix2/other']);
    expect(await collect(store)).toEqual([{ key: 'k/one.txt', size: 1 }]);
  });

  it('writes each object with the Content-Type of its key’s extension, by put, putIfAbsent and putStream alike', async () => {
    const store = new S3Store({ client: s3.client, bucket: 'store-test', prefix: 'typed' });
    const expected: Record<string, string> = {
      'manifest.jsonl': 'application/x-ndjson',
      'summary.json': 'application/json',
      'parts/00000001.stage0.json': 'application/json',
      'confidence.png': 'image/png',
      'confidence.svg': 'image/svg+xml',
      'review.csv': 'text/csv',
      'LABEL.CSV': 'text/csv',
      'config.xml': 'application/xml',
      'output.manifest': 'application/x-ndjson',
      'notes.bin': 'application/octet-stream',
      '.hidden': 'application/octet-stream',
    };
    const contentType = async (key: string) => (await s3.client.send(new HeadObjectCommand({ Bucket: 'store-test', Key: `typed/${key}` }))).ContentType;
    for (const [key, type] of Object.entries(expected)) {
      await store.put(key, 'x');
      expect(await contentType(key), key).toBe(type);
    }
    expect(await store.putIfAbsent('fresh/_cascade/run.json', '{}')).toBe(true);
    expect(await contentType('fresh/_cascade/run.json')).toBe('application/json');
    await store.putStream(
      'streamed/manifest.jsonl',
      (async function* () {
        yield '{"a":1}\n';
      })(),
    );
    expect(await contentType('streamed/manifest.jsonl')).toBe('application/x-ndjson');
  });

  it('treats keys as data: spaces, unicode and dots round-trip', async () => {
    const store = new S3Store({ client: s3.client, bucket: 'store-test', prefix: 'data' });
    for (const key of ['a b/c+d.jpg', 'é/ü.png', '.hidden']) {
      await store.put(key, key);
      expect((await store.get(key)).toString()).toBe(key);
    }
    await expect(store.put('', 'x')).rejects.toBeInstanceOf(InvalidKeyError);
  });

  it('paginates list() with a small page size', async () => {
    const store = new S3Store({ client: s3.client, bucket: 'store-test', prefix: 'paged', pageSize: 3 });
    const keys = Array.from({ length: 10 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await Promise.all(keys.map((k) => store.put(k, k)));
    expect((await collect(store)).map((o) => o.key)).toEqual(keys);
  });

  it('reports a missing bucket as not found, naming the bucket', async () => {
    const store = new S3Store({ client: s3.client, bucket: 'no-such-bucket' });
    await expect(store.get('x')).rejects.toThrow(/Object not found: s3:\/\/no-such-bucket\/x \(bucket "no-such-bucket" does not exist\)/);
    await expect(collect(store)).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.getStream('x')).rejects.toThrow(/Object not found: s3:\/\/no-such-bucket\/x \(bucket "no-such-bucket" does not exist\)/);
  });

  it('survives an endpoint that comes up a little late (SDK retries)', async () => {
    // The endpoint is a proxy that refuses connections until it is up: its port is its own from
    // the start, so nothing else can take it while the client waits.
    const proxy = await startOutageProxy(s3.port, { down: true });
    const client = makeS3Client(
      { endpoint: `http://${proxy.address}`, forcePathStyle: true },
      { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxAttempts: 10 },
    );
    try {
      await s3.createBucket('late-bucket');
      const pending = new S3Store({ client, bucket: 'late-bucket' }).put('x', 'hello');
      await until(() => proxy.refused > 0);
      proxy.up();
      await pending;
      expect((await new S3Store({ client: s3.client, bucket: 'late-bucket' }).get('x')).toString()).toBe('hello');
    } finally {
      client.destroy();
      await proxy.close();
    }
  });
});

/** Stores whose S3 row counts its connections and uses the s3rver client (borrowed, so close() leaves it open). */
function countingStores(): { stores: Stores; connects: () => number } {
  let n = 0;
  const row = { ...s3Scheme, connect: (settings: StoreSettings) => (n++, s3Scheme.connect(settings, s3.client)) };
  return { stores: new Stores({}, { schemes: [row] }), connects: () => n };
}

describe('Stores', () => {
  it('opens the right store and connects the S3 row only for s3:// locations, once', () => {
    const { stores, connects } = countingStores();
    const local = stores.open(path.join(tmp, 'opened'));
    expect(local).toBeInstanceOf(LocalStore);
    expect(connects()).toBe(0);
    const remote = stores.open('s3://store-test/out');
    expect(remote).toBeInstanceOf(S3Store);
    expect(remote.describe()).toBe('s3://store-test/out/');
    expect(stores.open({ kind: 'remote', scheme: 's3', bucket: 'store-test', prefix: 'other/' }).describe()).toBe('s3://store-test/other/');
    expect(connects()).toBe(1);
  });

  it('connects again after close(), and each Stores has its own connections', () => {
    const a = countingStores();
    a.stores.open('s3://store-test/x');
    a.stores.close();
    a.stores.open('s3://store-test/x');
    expect(a.connects()).toBe(2);
    const b = countingStores();
    b.stores.open('s3://store-test/x');
    expect([a.connects(), b.connects()]).toEqual([2, 1]);
  });

  it('builds its own client from the settings and destroys it on close()', async () => {
    await s3.client.send(new PutObjectCommand({ Bucket: 'store-test', Key: 'own/k.txt', Body: 'own' }));
    const stores = new Stores({ s3: { endpoint: s3.endpoint, forcePathStyle: true } });
    const prev = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    try {
      expect((await stores.open('s3://store-test/own/').get('k.txt')).toString()).toBe('own');
    } finally {
      stores.close();
      for (const [k, v] of [
        ['AWS_ACCESS_KEY_ID', prev.id],
        ['AWS_SECRET_ACCESS_KEY', prev.secret],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('refuses a scheme with no row, naming it', async () => {
    const none = new Stores({}, { schemes: [] });
    expect(() => none.open('s3://store-test/x')).toThrow('No S3 store is configured for s3:// URLs');
    await expect(fetchRef('s3://store-test/img/a.jpg', none)).rejects.toThrow('No S3 store is configured for s3:// URLs');
  });
});

describe('fetchRef', () => {
  let counting = countingStores();
  let deps = counting.stores;
  const calls = () => counting.connects();
  // The objects every test here reads, made once for the block: each test runs alone or in any order.
  beforeAll(async () => {
    await fs.mkdir(path.join(tmp, 'fetch'), { recursive: true });
    await fs.writeFile(path.join(tmp, 'fetch', 'img.jpg'), 'jpegbytes');
    await s3.client.send(new PutObjectCommand({ Bucket: 'store-test', Key: 'img/a b.jpg', Body: 'from-s3' }));
  });
  beforeEach(() => {
    counting = countingStores();
    deps = counting.stores;
  });
  it('reads local paths (absolute, relative, file://) without touching S3', async () => {
    const file = path.join(tmp, 'fetch', 'img.jpg');
    expect((await fetchRef(file, deps)).toString()).toBe('jpegbytes');
    expect((await fetchRef(path.relative(process.cwd(), file), deps)).toString()).toBe('jpegbytes');
    expect((await fetchRef(pathToFileURL(file).href, deps)).toString()).toBe('jpegbytes');
    expect(calls()).toBe(0);
  });

  it('reads s3:// refs', async () => {
    expect((await fetchRef('s3://store-test/img/a b.jpg', deps, { maxBytes: 100 })).toString()).toBe('from-s3');
    expect((await fetchRef('S3://store-test/img/a b.jpg', deps)).toString()).toBe('from-s3');
    expect(calls()).toBe(1);
  });

  it('returns empty objects as empty buffers', async () => {
    const file = path.join(tmp, 'fetch', 'empty.jpg');
    await fs.writeFile(file, '');
    expect((await fetchRef(file, deps, { maxBytes: 10 })).length).toBe(0);
    await s3.client.send(new PutObjectCommand({ Bucket: 'store-test', Key: 'img/empty.jpg', Body: Buffer.alloc(0) }));
    expect((await fetchRef('s3://store-test/img/empty.jpg', deps, { maxBytes: 10 })).length).toBe(0);
  });

  it('raises the typed errors for missing and oversized objects', async () => {
    const missingLocal = path.join(tmp, 'fetch', 'missing.jpg');
    await expect(fetchRef(missingLocal, deps)).rejects.toThrow(new ObjectNotFoundError(missingLocal).message);
    await expect(fetchRef('s3://store-test/img/missing.jpg', deps)).rejects.toBeInstanceOf(ObjectNotFoundError);
    const file = path.join(tmp, 'fetch', 'img.jpg');
    await expect(fetchRef(file, deps, { maxBytes: 4 })).rejects.toBeInstanceOf(ObjectTooLargeError);
    await expect(fetchRef('s3://store-test/img/a b.jpg', deps, { maxBytes: 4 })).rejects.toThrow(
      /Object too large: s3:\/\/store-test\/img\/a b\.jpg is 7 bytes, over the 4-byte limit/,
    );
  });

  it('rejects refs it cannot fetch', async () => {
    await expect(fetchRef('s3://store-test/', deps)).rejects.toThrow(/needs a key/);
    await expect(fetchRef('https://example.com/a.jpg', deps)).rejects.toThrow(/Unsupported image ref/);
    await expect(fetchRef('s3://x/a.jpg', deps)).rejects.toThrow(/invalid bucket name/);
  });
});

/** Polls `check` every 20 ms until it holds. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 20));
}
